"""Imputation and scoring of arbitrary rows (evaluation/own_rows.py) on the linear-Gaussian model: the
numbers are those of the existing evaluation on the same rows and seed, observed entries stay, every
missing one is filled, and the imputation tends to the exact conditional mean as K grows."""

from __future__ import annotations

import pytest
import torch
from tests.missing_testing import exact_conditional, exact_observed_log_marginal

from deepem.data.corruption import mcar
from deepem.evaluation.imputation import impute
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.evaluation.observed_loglik import observed_log_likelihood
from deepem.evaluation.own_rows import impute_rows, score_rows
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


@pytest.mark.parametrize("proposal", ["completed", "zero-filled"])
def test_scores_equal_the_evaluation_per_point_values(proposal):
    model, x, mask = problem(23)
    seen = []
    mine = score_rows(model, x.masked_fill(~mask, float("nan")), mask, particles=50, proposal=proposal, seed=3,
                      batch_size=10, progress=seen.append)
    theirs = observed_log_likelihood(model, x, mask, particles=50, proposal=proposal, batch_size=10, seed=3)
    assert torch.equal(mine.per_point, theirs.per_point)
    assert seen == [10, 10, 3]  # one report per chunk of rows
    assert mine.settings == {"particles": 50, "seed": 3, "proposal": proposal} and "K=50" in mine.estimator
    complete = score_rows(model, x, None, particles=50, seed=3, batch_size=10)
    assert torch.equal(complete.per_point, iw_log_likelihood(model, x, 50, batch_size=10, seed=3).per_point)
    # and with many particles the bound is the exact log p(x_o)
    exact = exact_observed_log_marginal(model, x, mask).detach()
    big = score_rows(model, x, mask, particles=20000, proposal=proposal, seed=3).per_point
    # measured (completed): mean |error| 0.03, worst 0.12 (one random completion per row is a poor proposal)
    assert float((big - exact).abs().mean()) < 0.06


def test_imputation_keeps_observed_fills_missing_and_equals_impute():
    model, x, mask = problem(17, seed=1)
    garbage = x.masked_fill(~mask, float("nan"))
    seen = []
    mine = impute_rows(model, garbage, mask, particles=40, draws=3, seed=5, batch_size=7, progress=seen.append)
    theirs = impute(model, garbage, mask, particles=40, draws=3, seed=5, batch_size=7)
    assert torch.equal(mine.imputed, theirs.imputed) and torch.equal(mine.draws, theirs.draws)
    assert seen == [7, 7, 3]
    assert torch.equal(mine.imputed[mask], x[mask]) and torch.isfinite(mine.imputed).all()
    assert torch.equal(mine.draws[:, mask], x[mask].expand(3, -1)) and torch.isfinite(mine.draws).all()
    assert mine.n_missing == int((~mask).sum()) > 0


def test_imputation_converges_to_the_exact_conditional_mean():
    model, x, mask = problem(8)
    exact, _ = exact_conditional(model, x, mask)
    missing = ~mask
    errors = {}
    for k in (3, 100, 20000):
        imputed = impute_rows(model, x, mask, particles=k, seed=1).imputed
        errors[k] = float((imputed - exact)[missing].pow(2).mean())
    # measured: 0.10 (K = 3), 8.5e-5 (K = 20000), as evaluation.imputation.impute
    assert errors[20000] < errors[100] < errors[3] and errors[20000] < 1e-3, errors


def test_bad_arguments_are_refused():
    model, x, mask = problem(4)
    with pytest.raises(ValueError, match="unknown proposal"):
        score_rows(model, x, mask, proposal="mean")
    with pytest.raises(ValueError, match="shaped like the rows"):
        impute_rows(model, x, mask[:2])
    with pytest.raises(ValueError, match="particles must be >= 1"):
        impute_rows(model, x, mask, particles=0)
