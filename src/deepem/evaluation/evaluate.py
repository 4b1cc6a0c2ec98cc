"""Evaluate a model: a log-likelihood estimate by a named estimator plus encoder diagnostics, and the
fixed evaluation subsets that make runs comparable. (Evaluating a run folder is workflows/evaluate.py.)"""

from __future__ import annotations

import time
from typing import Any

import torch
from tqdm import tqdm

from deepem.errors import InvalidInputError
from deepem.evaluation.ais import ais_log_likelihood
from deepem.evaluation.diagnostics import (
    active_units,
    active_units_per_layer,
    encoder_means,
    kl_estimator,
    kl_to_prior,
)
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.evaluation.sharding import Shard
from deepem.inference.numerics import flush_denormals
from deepem.models.lvm import DeepLatentModel

ESTIMATORS = ("iw", "ais")


def estimate_log_likelihood(model: DeepLatentModel, data: torch.Tensor, estimator: str = "iw",
                            particles: int = 5000, seed: int = 0, batch_size: int = 100,
                            progress: bool = True, mask: torch.Tensor | None = None,
                            shard: Shard | None = None, **ais_options: Any) -> LogLikelihoodEstimate:
    """log p(x) for every row of `data` by the named estimator, with a progress bar; with an observed-data
    mask, log p(x_o) (the importance-weighted estimator only)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if mask is not None and estimator != "iw":
        raise InvalidInputError("log p(x_o) of incomplete data is estimated with the importance-weighted estimator "
                                "only; use --estimator iw")
    # disable=None: a bar on a terminal only; written to a log file, bars would fill it
    bar = tqdm(total=data.shape[0], unit="pt", disable=None if progress else True, desc=f"{estimator} log-likelihood")
    try:
        if estimator == "iw":
            return iw_log_likelihood(model, data, particles, batch_size=batch_size, seed=seed,
                                     progress=bar.update, mask=mask, shard=shard)
        return ais_log_likelihood(model, data, seed=seed, batch_size=batch_size, progress=bar.update,
                                  shard=shard, **ais_options)
    finally:
        bar.close()


def evaluate_model(model: DeepLatentModel, data: torch.Tensor, estimator: str = "iw",
                   particles: int = 5000, seed: int = 0, batch_size: int = 100, progress: bool = True,
                   mask: torch.Tensor | None = None, shard: Shard | None = None, **ais_options: Any
                   ) -> tuple[dict[str, Any], LogLikelihoodEstimate]:
    """The summary record of one evaluation and the per-point estimate behind it (shard: this rank's
    part of a sharded evaluation, evaluation/sharding.py; the record is the same)."""
    start = time.perf_counter()
    with flush_denormals():
        estimate = estimate_log_likelihood(model, data, estimator, particles, seed, batch_size, progress,
                                           mask, shard, **ais_options)
    seconds = time.perf_counter() - start
    means = encoder_means(model, data, mask=mask)
    record = estimate.summary()
    record.update(
        particles=estimate.settings.get("particles", particles if estimator == "iw" else None),
        active_units=active_units(model, data, means=means),
        active_units_per_layer=active_units_per_layer(model, data, means=means),
        kl_to_prior=kl_to_prior(model, data, mask=mask),
        kl_estimator=kl_estimator(model),
        seconds=seconds,
        points_per_sec=data.shape[0] / max(seconds, 1e-9),
    )
    return record, estimate


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
