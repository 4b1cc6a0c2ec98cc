"""Evaluate a trained run: a log-likelihood estimate on one split plus encoder diagnostics, written to
RUN/evaluation.json (the newest) and RUN/evaluations/<estimator>-<split>.json with per-point values."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from deepem.evaluation.diagnostics import active_units, encoder_means, kl_to_prior
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.inference.numerics import flush_denormals
from deepem.models.lvm import DeepLatentModel
from deepem.training.files import atomic_write_bytes, atomic_write_json
from deepem.training.loading import load_trained_run

ESTIMATORS = ("iw", "ais")


def estimate_log_likelihood(model: DeepLatentModel, data: torch.Tensor, estimator: str = "iw",
                            particles: int = 5000, seed: int = 0, batch_size: int = 100,
                            progress: bool = True, **ais_options: Any) -> LogLikelihoodEstimate:
    """log p(x) for every row of `data` by the named estimator, with a progress bar."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    bar = tqdm(total=data.shape[0], unit="pt", disable=not progress, desc=f"{estimator} log-likelihood")
    try:
        if estimator == "iw":
            return iw_log_likelihood(model, data, particles, batch_size=batch_size, seed=seed,
                                     progress=bar.update)
        from deepem.evaluation.ais import ais_log_likelihood

        return ais_log_likelihood(model, data, seed=seed, batch_size=batch_size, progress=bar.update,
                                  **ais_options)
    finally:
        bar.close()


def evaluate_model(model: DeepLatentModel, data: torch.Tensor, estimator: str = "iw",
                   particles: int = 5000, seed: int = 0, batch_size: int = 100, progress: bool = True,
                   **ais_options: Any) -> tuple[dict[str, Any], LogLikelihoodEstimate]:
    """The summary record of one evaluation and the per-point estimate behind it."""
    start = time.perf_counter()
    with flush_denormals():
        estimate = estimate_log_likelihood(model, data, estimator, particles, seed, batch_size, progress,
                                           **ais_options)
    seconds = time.perf_counter() - start
    means = encoder_means(model, data)
    record = estimate.summary()
    record.update(
        particles=estimate.settings.get("particles", particles if estimator == "iw" else None),
        active_units=active_units(model, data, means=means),
        kl_to_prior=kl_to_prior(model, data),
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


def evaluate_run(run_dir: str | Path, estimator: str = "iw", particles: int = 5000, split: str = "test",
                 limit: int | None = None, seed: int = 0, batch_size: int = 100,
                 data_dir: str | None = None, device: str = "cpu", progress: bool = True,
                 **ais_options: Any) -> dict[str, Any]:
    """Evaluate the newest good checkpoint of a run and write the results into the run folder."""
    trained = load_trained_run(run_dir, data_dir=data_dir, device=device)
    data = trained.data.split(split)
    if split == "train" and trained.config.train_limit is not None:
        data = data[: trained.config.train_limit]  # only the points the run was trained on
    n_split = data.shape[0]
    if limit is not None:
        data = data[evaluation_subset(n_split, limit)]
    record, estimate = evaluate_model(trained.model, data, estimator, particles, seed, batch_size,
                                      progress, **ais_options)
    record.update(split=split, seed=seed, method=trained.config.method, dataset=trained.config.dataset,
                  checkpoint=trained.checkpoint.name, step=trained.step,
                  subset=f"fixed random {min(limit, n_split)} of {n_split}" if limit else f"all {n_split}")
    run = Path(run_dir)
    tag = f"{estimator}-{split}"
    buffer = _npy_bytes(estimate.per_point.numpy())
    atomic_write_bytes(run / "evaluations" / f"{tag}-per-point.npy", buffer)
    atomic_write_json(run / "evaluations" / f"{tag}.json", record, checksum=True)
    atomic_write_json(run / "evaluation.json", record, checksum=True)
    return record


def _npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()
