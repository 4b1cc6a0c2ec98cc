"""Model-free imputation baselines on the same masks (the comparison of Mattei & Frellsen 2019,
Table 2): the column mean of the observed entries, and scikit-learn's IterativeImputer (MICE-style
chained regressions with Bayesian ridge). Both return an `ImputationResult`, like model imputation.

By default a baseline is fitted on the data it imputes (the transductive setting of the MIWAE and
IWEM UCI experiments: train on the incomplete table, impute its own missing entries); `fit_data` and
`fit_mask` fit it on other data instead (e.g. the training split, to impute the test split).

IterativeImputer's cost grows with rows x columns^2 per round: above ITERATIVE_MAX_CELLS fitted cells it
is fitted on a seeded random subsample of ITERATIVE_MAX_CELLS // columns rows, and above
ITERATIVE_MAX_COLUMNS columns each column is regressed on its ITERATIVE_NEAREST most correlated columns
(scikit-learn's n_nearest_features); the result's settings carry a note saying so. Below both bounds
(every UCI table) it is the plain IterativeImputer."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from deepem.evaluation.imputation import ImputationResult, fill_missing, missing_mse

#: fitted cells (rows x columns) above which IterativeImputer is fitted on a random subsample of rows
ITERATIVE_MAX_CELLS = 500_000
#: columns above which each column is regressed on its ITERATIVE_NEAREST most correlated columns only
ITERATIVE_MAX_COLUMNS = 100
ITERATIVE_NEAREST = 20


def _nan_array(x: Tensor, mask: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).masked_fill(~mask.cpu(), float("nan")).numpy()


def _result(x: Tensor, mask: Tensor, values: Tensor, complete: Tensor | None, estimator: str,
            settings: dict) -> ImputationResult:
    imputed = fill_missing(x.detach().cpu(), mask.cpu(), values.to(x.dtype))
    if complete is None:
        mse, n = None, int((~mask).sum())
    else:
        mse, n = missing_mse(imputed, complete.cpu(), mask.cpu())
    return ImputationResult(imputed, None, mse, n, estimator, settings)


def mean_imputation(data: Tensor, mask: Tensor, complete: Tensor | None = None,
                    fit_data: Tensor | None = None, fit_mask: Tensor | None = None) -> ImputationResult:
    """Missing entries set to their column's mean over the observed entries of the fit data (0 for a
    column with no observed entry)."""
    fit_data, fit_mask = (data, mask) if fit_data is None else (fit_data, fit_mask)
    if fit_mask is None:
        raise ValueError("fit_data needs its fit_mask (True = observed)")
    m = fit_mask.cpu().to(torch.float64)
    total = torch.where(fit_mask.cpu(), fit_data.detach().cpu().to(torch.float64), torch.zeros(())).sum(0)
    means = total / m.sum(0).clamp_min(1)
    return _result(data, mask, means, complete, "column mean of observed entries", {})


def iterative_imputation(data: Tensor, mask: Tensor, complete: Tensor | None = None,
                         fit_data: Tensor | None = None, fit_mask: Tensor | None = None, seed: int = 0,
                         max_iter: int = 10) -> ImputationResult:
    """scikit-learn's IterativeImputer (Bayesian ridge, `max_iter` rounds, seeded) fitted on the
    observed entries of the fit data, then applied to `data`."""
    # scikit-learn is imported here, where it is used: it takes a second or more to load, and the CLI's
    # start-up path (`deepem --help`, `deepem list`) must not pay for it (issue 23, item 12)
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (makes IterativeImputer importable)
    from sklearn.impute import IterativeImputer

    if fit_data is not None and fit_mask is None:
        raise ValueError("fit_data needs its fit_mask (True = observed)")
    target = _nan_array(data, mask)
    fit = target if fit_data is None else _nan_array(fit_data, fit_mask)
    n, d = fit.shape
    settings: dict = {"max_iter": max_iter, "seed": seed}
    notes = []
    if n * d > ITERATIVE_MAX_CELLS:
        rows = max(1, ITERATIVE_MAX_CELLS // d)
        pick = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
        fit = fit[pick]
        notes.append(f"fitted on a random subsample of {rows} of the {n} rows (above {ITERATIVE_MAX_CELLS} cells)")
        settings["fit_rows"] = rows
    nearest = ITERATIVE_NEAREST if d > ITERATIVE_MAX_COLUMNS else None
    if nearest is not None:
        notes.append(f"each column regressed on its {nearest} most correlated columns (above "
                     f"{ITERATIVE_MAX_COLUMNS} columns)")
        settings["n_nearest_features"] = nearest
    if notes:
        settings["note"] = "; ".join(notes)
    imputer = IterativeImputer(max_iter=max_iter, random_state=seed, keep_empty_features=True,
                               n_nearest_features=nearest)
    values = imputer.fit_transform(target) if fit is target else imputer.fit(fit).transform(target)
    return _result(data, mask, torch.from_numpy(values), complete,
                   "scikit-learn IterativeImputer (BayesianRidge)", settings)
