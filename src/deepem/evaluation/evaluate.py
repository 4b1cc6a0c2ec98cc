"""Evaluate a model: a log-likelihood estimate by a named estimator plus encoder diagnostics, and the
fixed evaluation subsets that make runs comparable. (Evaluating a run folder is workflows/evaluate.py.)"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from tqdm import tqdm

from deepem.evaluation.diagnostics import (
    active_units,
    active_units_per_layer,
    encoder_means,
    kl_estimator,
    kl_to_prior,
)
from deepem.evaluation.driver import Estimator, estimate
from deepem.evaluation.estimators import ESTIMATORS, make_estimator
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.evaluation.sharding import Shard
from deepem.inference.numerics import flush_denormals
from deepem.models.lvm import DeepLatentModel

__all__ = ["ESTIMATORS", "estimate_log_likelihood", "evaluate_model", "evaluation_subset"]


def estimate_log_likelihood(model: DeepLatentModel, data: torch.Tensor, estimator: str | Estimator = "iw",
                            seed: int = 0, batch_size: int = 100, progress: bool = True,
                            mask: torch.Tensor | None = None, shard: Shard | None = None,
                            **settings: Any) -> LogLikelihoodEstimate:
    """log p(x) for every row of `data` by an estimator (an object, or a registered name with its
    `settings`), with a progress bar; with an observed-data mask, log p(x_o)."""
    est = estimator if isinstance(estimator, Estimator) else make_estimator(estimator, **settings)
    # disable=None: a bar on a terminal only; written to a log file, bars would fill it
    bar = tqdm(total=data.shape[0], unit="pt", disable=None if progress else True, desc=f"{est.name} log-likelihood")
    try:
        return estimate(est, model, data, mask, batch_size=batch_size, seed=seed, progress=bar.update, shard=shard)
    finally:
        bar.close()


def evaluate_model(model: DeepLatentModel, data: torch.Tensor, estimator: str | Estimator = "iw",
                   seed: int = 0, batch_size: int = 100, progress: bool = True,
                   mask: torch.Tensor | None = None, shard: Shard | None = None, **settings: Any
                   ) -> tuple[dict[str, Any], LogLikelihoodEstimate]:
    """The summary record of one evaluation and the per-point estimate behind it (shard: this rank's
    part of a sharded evaluation, evaluation/sharding.py; the record is the same)."""
    est = estimator if isinstance(estimator, Estimator) else make_estimator(estimator, **settings)
    start = time.perf_counter()
    with flush_denormals():
        result = estimate_log_likelihood(model, data, est, seed, batch_size, progress, mask, shard)
    seconds = time.perf_counter() - start
    # the diagnostics' draws (an implicit q's means, a Monte Carlo KL) from generators of the evaluation's
    # seed: the record is the same whatever used the global RNG before
    means = encoder_means(model, data, mask=mask, seed=seed)
    record = result.summary()
    record.update(
        estimator_name=est.name,  # the registered name: readers find records by it, not by file names
        particles=result.settings.get("particles"),
        active_units=active_units(model, data, means=means),
        active_units_per_layer=active_units_per_layer(model, data, means=means),
        kl_to_prior=kl_to_prior(model, data, mask=mask, seed=seed),
        kl_estimator=kl_estimator(model),
        seconds=seconds,
        points_per_sec=data.shape[0] / max(seconds, 1e-9),
    )
    # A number that does not exist (the KL of an implicit q, which has no density; the standard error of
    # one point) is null in the record, not NaN: JSON has no NaN, and readers would take it for a value.
    for key in ("kl_to_prior", "stderr"):
        if isinstance(record[key], float) and not math.isfinite(record[key]):
            record[key] = None
    return record, result


#: the subset a `limit` picks is fixed, whatever the evaluation seed, so runs are compared on the same points
SUBSET_SEED = 20_190_101


def evaluation_subset(n: int, limit: int) -> torch.Tensor:
    """Indices of `limit` points drawn without replacement by a fixed permutation; a smaller limit gives a
    prefix of a larger one. Not the first `limit` points: dataset files are often ordered (the MNIST test
    set's first half comes from other writers than its second, with more ink), so a head is biased."""
    if limit >= n:
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))
    return order[:limit]
