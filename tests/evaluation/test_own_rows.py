"""Imputation and scoring of arbitrary rows (evaluation/own_rows.py): a row's answer depends on the seed
and the row only (bit for bit, whatever rows come with it, in whatever order and batch size), observed
entries stay, every missing one is filled, and on the linear-Gaussian model the imputation, the scores
and the distribution of the SIR draws tend to the exact ones as K grows."""

from __future__ import annotations

import pytest
import torch
from tests.missing_testing import exact_conditional, exact_observed_log_marginal

from deepem.data.corruption import mcar
from deepem.evaluation.own_rows import impute_rows, score_rows
from deepem.models import ModelConfig, make_model
from deepem.models.linear_gaussian import linear_gaussian_model, set_encoder_to_posterior

D, DZ, NOISE = 5, 2, 0.5


def problem(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = linear_gaussian_model(D, DZ, noise_std=NOISE, generator=g)
    with torch.no_grad():
        model.decoder.weight.mul_(2.0)
        z = torch.randn(n, DZ, generator=g, dtype=torch.float64)
        x = model.decoder(z) + NOISE * torch.randn(n, D, generator=g, dtype=torch.float64)
    mask = mcar(x, 0.4, g)
    mask[:, 0] = True
    set_encoder_to_posterior(model, std_scale=2.0)
    return model, x, mask


def mlp_problem(n: int, likelihood: str):
    """A small float32 MLP model (the scikit-learn estimators' kind) and rows with holes."""
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=3, hidden=[16, 16], likelihood=likelihood), 6)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g)
    if likelihood == "bernoulli":
        x = (x > 0).float()
    return model, x, mcar(x, 0.3, g)


def answers(model, x, mask, proposal, batch_size):
    """(imputation, draws, score of x_o, score of complete x) of the rows, each row-wise."""
    imputed = impute_rows(model, x.masked_fill(~mask, float("nan")), mask, particles=70, draws=3, proposal=proposal,
                          seed=4, batch_size=batch_size)
    observed = score_rows(model, x, mask, particles=70, proposal=proposal, seed=4, batch_size=batch_size)
    complete = score_rows(model, x, None, particles=70, seed=4, batch_size=batch_size)
    return imputed.imputed, imputed.draws, observed.per_point, complete.per_point


@pytest.mark.parametrize("kind", ["linear-gaussian", "gaussian", "bernoulli"])
@pytest.mark.parametrize("proposal", ["completed", "zero-filled"])
def test_a_rows_answers_do_not_depend_on_the_other_rows(kind, proposal):
    model, x, mask = problem(37) if kind == "linear-gaussian" else mlp_problem(37, kind)
    full = answers(model, x, mask, proposal, batch_size=100)
    g = torch.Generator().manual_seed(2)
    for rows, batch_size in [(torch.randperm(37, generator=g), 7),  # another order, other batches
                             (torch.randperm(37, generator=g)[:20], 3),  # a subset
                             (torch.tensor([11]), 1), (torch.tensor([30, 2]), 50)]:
        part = answers(model, x[rows], mask[rows], proposal, batch_size)
        for whole, mine in zip(full, part, strict=True):
            picked = whole[:, rows] if whole.dim() == 3 else whole[rows]
            assert torch.equal(picked, mine), (kind, proposal, rows, batch_size)


def test_identical_rows_agree_and_seeds_differ():
    model, x, mask = problem(12)
    x[7], mask[7] = x[3], mask[3]
    holes = x.masked_fill(~mask, float("nan"))
    holes[7] = x[3].masked_fill(~mask[3], -123.0)  # what a missing entry holds is never read
    result = impute_rows(model, holes, mask, particles=50, draws=2, seed=1)
    scores = score_rows(model, holes, mask, particles=50, seed=1).per_point
    assert torch.equal(result.imputed[7], result.imputed[3]) and torch.equal(result.draws[:, 7], result.draws[:, 3])
    assert scores[7] == scores[3]
    other = impute_rows(model, holes, mask, particles=50, draws=2, seed=2)
    missing = ~mask
    assert ((other.imputed != result.imputed) == missing).all()  # every missing entry moves, nothing else
    assert ((other.draws != result.draws) == missing).all()
    assert (score_rows(model, holes, mask, particles=50, seed=2).per_point != scores).all()


def test_chunking_particles_changes_rounding_only():
    """The particles of a row are addressed by their index, so chunking them draws the same ones."""
    model, x, mask = problem(9)
    whole = impute_rows(model, x, mask, particles=90, draws=4, seed=3)
    chunked = impute_rows(model, x, mask, particles=90, draws=4, seed=3, chunk_particles=7)
    assert torch.allclose(whole.imputed, chunked.imputed, rtol=1e-12, atol=1e-12)
    whole_score = score_rows(model, x, mask, particles=90, seed=3).per_point
    chunked_score = score_rows(model, x, mask, particles=90, seed=3, chunk_particles=7).per_point
    assert torch.allclose(whole_score, chunked_score, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("proposal", ["completed", "zero-filled"])
def test_scores_tend_to_the_exact_observed_log_marginal(proposal):
    model, x, mask = problem(23)
    seen = []
    estimate = score_rows(model, x.masked_fill(~mask, float("nan")), mask, particles=20000, proposal=proposal,
                          seed=3, batch_size=10, progress=seen.append)
    assert seen == [10, 10, 3]  # one report per batch of rows
    assert estimate.settings == {"particles": 20000, "seed": 3, "proposal": proposal}
    assert "K=20000" in estimate.estimator
    exact = exact_observed_log_marginal(model, x, mask).detach()
    # measured (completed): mean |error| 0.03 (one random completion per row is a poor proposal)
    assert float((estimate.per_point - exact).abs().mean()) < 0.06


def test_imputation_keeps_observed_and_fills_missing():
    model, x, mask = problem(17, seed=1)
    seen = []
    mine = impute_rows(model, x.masked_fill(~mask, float("nan")), mask, particles=40, draws=3, seed=5, batch_size=7,
                       progress=seen.append)
    assert seen == [7, 7, 3]
    assert torch.equal(mine.imputed[mask], x[mask]) and torch.isfinite(mine.imputed).all()
    assert torch.equal(mine.draws[:, mask], x[mask].expand(3, -1)) and torch.isfinite(mine.draws).all()
    assert mine.n_missing == int((~mask).sum()) > 0
    none = impute_rows(model, x[:0], mask[:0], particles=4, draws=2)
    assert none.imputed.shape == (0, D) and none.draws.shape == (2, 0, D)


def test_imputation_converges_to_the_exact_conditional_mean():
    model, x, mask = problem(8)
    exact, _ = exact_conditional(model, x, mask)
    missing = ~mask
    errors = {}
    for k in (3, 100, 20000):
        imputed = impute_rows(model, x, mask, particles=k, seed=1).imputed
        errors[k] = float((imputed - exact)[missing].pow(2).mean())
    # measured: 0.24 (K = 3), 5.8e-3 (K = 100), 3.2e-4 (K = 20000); over seeds the error is heavy-tailed
    assert errors[20000] < errors[100] < errors[3] and errors[20000] < 1e-3, errors


@pytest.mark.parametrize("proposal", ["completed", "zero-filled"])
def test_sir_draws_follow_the_exact_posterior(proposal):
    """The M draws by sampling importance resampling are draws of p(x_m | x_o): their mean and variance
    tend to the closed forms as K grows (with few particles, resampling cannot undo a poor proposal)."""
    model, x, mask = problem(6)
    set_encoder_to_posterior(model, std_scale=3.0)  # wide enough that K = 20000 particles suffice
    exact_mean, exact_var = exact_conditional(model, x, mask)
    missing = ~mask
    errors = {}
    for k in (2, 20000):
        draws = impute_rows(model, x, mask, particles=k, draws=4000, proposal=proposal, seed=2).draws
        mean_error = ((draws.mean(0) - exact_mean)[missing] / exact_var[missing].sqrt()).abs().max()
        var_ratio = (draws.var(0)[missing] / exact_var[missing])
        errors[k] = (float(mean_error), float(var_ratio.min()), float(var_ratio.max()))
    # measured, K = 20000: worst mean error 0.04 (completed), 0.05 (zero-filled) posterior sd, variance
    # ratios 0.98 .. 1.07 and 0.89 .. 1.04; K = 2: worst mean error 2.7 and 2.9 sd
    mean_error, low, high = errors[20000]
    assert mean_error < 0.1 and 0.85 < low and high < 1.15, errors
    assert errors[2][0] > 1.0, errors


def test_bad_arguments_are_refused():
    model, x, mask = problem(4)
    with pytest.raises(ValueError, match="unknown proposal"):
        score_rows(model, x, mask, proposal="mean")
    with pytest.raises(ValueError, match="shaped like the rows"):
        impute_rows(model, x, mask[:2])
    with pytest.raises(ValueError, match="particles must be >= 1"):
        impute_rows(model, x, mask, particles=0)
    with pytest.raises(ValueError, match="draws must be >= 0"):
        impute_rows(model, x, mask, draws=-1)
