"""Imputation on the linear-Gaussian model, where p(x_m | x_o) is Gaussian with known moments: the
SNIS single imputation tends to E[x_m | x_o] as K grows, SIR draws have its mean and variance, and
model imputation beats the column mean on data drawn from the model; the summary of a corrupted
dataset is JSON-ready."""

from __future__ import annotations

import json

import pytest
import torch
from tests.missing_testing import exact_conditional, exact_observed_log_marginal

from deepem.data.base import DataSplits
from deepem.data.corruption import corrupt_splits, mcar
from deepem.evaluation.imputation import impute, missing_mse
from deepem.evaluation.imputation_baselines import iterative_imputation, mean_imputation
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.evaluation.observed_loglik import observed_log_likelihood
from deepem.models.linear_gaussian import linear_gaussian_model, set_encoder_to_posterior
from deepem.workflows.impute import imputation_summary

D, DZ, NOISE = 5, 2, 0.5


def problem(n: int, seed: int = 0, p_missing: float = 0.4, weight_scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    model = linear_gaussian_model(D, DZ, noise_std=NOISE, generator=g)
    with torch.no_grad():
        model.decoder.weight.mul_(weight_scale)  # 2: strong correlations, x_o says much about x_m
        z = torch.randn(n, DZ, generator=g, dtype=torch.float64)
        x = model.decoder(z) + NOISE * torch.randn(n, D, generator=g, dtype=torch.float64)
    mask = mcar(x, p_missing, g)
    mask[:, 0] = True  # at least one observed coordinate per row
    set_encoder_to_posterior(model, std_scale=2.0)  # wide: the zero-filled input shifts q's mean
    return model, x, mask


def test_snis_imputation_converges_to_the_exact_conditional_mean():
    model, x, mask = problem(8)
    exact, _ = exact_conditional(model, x, mask)
    garbage = x.masked_fill(~mask, float("nan"))
    errors = {k: impute(model, garbage, mask, particles=k, seed=1, complete=exact).mse for k in (3, 100, 20000)}
    # measured: 0.10 (K = 3), 0.016 (K = 100), 8.5e-5 (K = 20000)
    assert errors[20000] < errors[100] < errors[3], errors
    assert errors[20000] < 1e-3, errors
    # the completed-input proposal of miss-IWEM (section 4.1) converges to the same conditional mean
    completed = impute(model, garbage, mask, particles=20000, seed=1, complete=exact, proposal="completed")
    # measured: 0.0022 (one random completion per point moves q's mean: more variance than zero-filling here)
    assert completed.mse < 1e-2 and completed.settings["proposal"] == "completed"
    with pytest.raises(ValueError, match="unknown imputation proposal"):
        impute(model, garbage, mask, proposal="mean")
    imputed = impute(model, garbage, mask, particles=50, seed=1).imputed
    assert torch.equal(imputed[mask], x[mask])  # observed entries are kept
    assert torch.isfinite(imputed).all()


def test_sir_draws_have_the_exact_conditional_mean_and_variance():
    model, x, mask = problem(4, seed=1)
    mean, var = exact_conditional(model, x, mask)
    result = impute(model, x, mask, particles=20000, draws=4000, seed=2, chunk_particles=3000)
    draws = result.draws
    assert draws.shape == (4000, 4, D)
    missing = ~mask
    assert torch.equal(draws[:, mask], x[mask].expand(4000, -1))
    draw_mean, draw_var = draws.mean(0)[missing], draws.var(0)[missing]
    # measured: |mean error| <= 0.022 for conditional stds 0.52-1.18; variance ratios 0.95-1.03
    torch.testing.assert_close(draw_mean, mean[missing], atol=0.08, rtol=0)
    torch.testing.assert_close(draw_var, var[missing], rtol=0.15, atol=0)
    # and the draws are not the conditional mean repeated: SIR adds p(x_m | z)'s noise
    assert float(draw_var.min()) > NOISE**2 * 0.8


def test_imputation_is_seeded_and_chunking_changes_nothing_but_the_draws_order():
    model, x, mask = problem(6, seed=2)
    a = impute(model, x, mask, particles=300, draws=5, seed=3)
    b = impute(model, x, mask, particles=300, draws=5, seed=3)
    assert torch.equal(a.imputed, b.imputed) and torch.equal(a.draws, b.draws)
    exact, _ = exact_conditional(model, x, mask)
    chunked = impute(model, x, mask, particles=20000, seed=4, chunk_particles=700)
    whole = impute(model, x, mask, particles=20000, seed=4, chunk_particles=20000)
    errors = [missing_mse(r.imputed, exact, mask)[0] for r in (chunked, whole)]
    # measured: 0.0031 both (the draws of a chunked and a whole pass here coincide)
    assert max(errors) < 1e-2, errors


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 10 rounds, as sklearn's default
def test_model_imputation_beats_the_column_mean_on_model_data():
    model, x, mask = problem(400, seed=3, p_missing=0.5)
    garbage = x.masked_fill(~mask, 1e30)
    model_result = impute(model, garbage, mask, particles=5000, seed=0, complete=x)
    mean_result = mean_imputation(garbage, mask, complete=x)
    mice_result = iterative_imputation(garbage, mask, complete=x)
    exact, _ = exact_conditional(model, x, mask)
    oracle = missing_mse(exact, x, mask)[0]
    # measured: model 0.756 (K = 5000; the oracle E[x_m | x_o] 0.739), IterativeImputer 0.865, column
    # mean 1.92, over 796 missing entries
    assert model_result.n_missing == mean_result.n_missing == int((~mask).sum()) > 0
    assert model_result.mse < 0.5 * mean_result.mse, (model_result.mse, mean_result.mse)
    assert abs(model_result.mse - oracle) < 0.05 * oracle, (model_result.mse, oracle)
    assert mice_result.mse < mean_result.mse
    for result in (model_result, mean_result, mice_result):
        summary = json.loads(json.dumps(result.summary()))
        assert summary["n_missing"] == model_result.n_missing and summary["mse"] == result.mse
        assert torch.equal(result.imputed[mask], x[mask])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_imputation_summary_of_a_corrupted_dataset_is_json_ready():
    model, x, _ = problem(120, seed=4)
    data = DataSplits("lg", x[:80], x[80:100], x[100:], "gaussian")
    corrupted = corrupt_splits(data, "mcar:0.5", seed=0)
    summary = json.loads(json.dumps(imputation_summary(model, corrupted, "test", particles=200, fit_split="train")))
    assert summary["split"] == "test" and summary["missing"] == "mcar:0.5" and summary["corruption_seed"] == 0
    assert summary["n_missing"] == int((~corrupted.splits.test_mask).sum())
    assert summary["model"]["mse"] < summary["mean"]["mse"] and summary["iterative"]["mse"] < summary["mean"]["mse"]
    with pytest.raises(ValueError, match="unknown imputation baseline"):
        imputation_summary(model, corrupted, baselines=("knn",))
    with pytest.raises(ValueError, match="no missing entries"):
        imputation_summary(model, corrupt_splits(data, "mcar:0.5", seed=0, splits=("train",)), "test")


@pytest.mark.parametrize("proposal", ["zero-filled", "completed"])
def test_observed_log_likelihood_converges_to_the_exact_observed_marginal(proposal):
    model, x, mask = problem(6, seed=5, weight_scale=1.0)
    exact = exact_observed_log_marginal(model, x, mask).detach()
    garbage = x.masked_fill(~mask, float("nan"))
    errors = {k: float((observed_log_likelihood(model, garbage, mask, k, proposal, seed=0).per_point - exact)
                       .abs().mean()) for k in (2, 20000)}
    # measured: zero-filled 2.45 (K = 2), 0.0032 (K = 20000); completed 0.77, 0.016 (one random completion
    # per point: its proposal is further from p(z | x_o) here than the zero-filled one at large K)
    assert errors[20000] < 0.03 and errors[20000] < 0.05 * errors[2], errors
    if proposal == "zero-filled":  # the same estimator as iw_log_likelihood with a mask
        same = iw_log_likelihood(model, garbage, 50, seed=3, mask=mask).per_point
        torch.testing.assert_close(observed_log_likelihood(model, garbage, mask, 50, proposal, seed=3).per_point, same)


def test_iterative_baseline_above_the_bound_is_fitted_on_a_seeded_subsample(monkeypatch):
    """Above ITERATIVE_MAX_CELLS fitted cells: IterativeImputer fitted on ITERATIVE_MAX_CELLS // D seeded
    random rows (exactly scikit-learn's on those rows), with a note; below it, the plain fit on all rows."""
    import numpy as np
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    from deepem.evaluation import imputation_baselines as baselines

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=gen, dtype=torch.float64)
    mask = torch.rand(60, 4, generator=gen) > 0.3
    plain = baselines.iterative_imputation(x, mask, seed=1)
    assert "note" not in plain.settings and "fit_rows" not in plain.settings
    monkeypatch.setattr(baselines, "ITERATIVE_MAX_CELLS", 100)
    bounded = baselines.iterative_imputation(x, mask, seed=1)
    assert bounded.settings["fit_rows"] == 25 and "random subsample of 25 of the 60 rows" in bounded.settings["note"]
    nan = x.masked_fill(~mask, float("nan")).numpy()
    rows = np.sort(np.random.default_rng(1).choice(60, size=25, replace=False))
    expected = IterativeImputer(max_iter=10, random_state=1, keep_empty_features=True).fit(nan[rows]).transform(nan)
    torch.testing.assert_close(bounded.imputed, torch.from_numpy(expected), rtol=0, atol=0)
