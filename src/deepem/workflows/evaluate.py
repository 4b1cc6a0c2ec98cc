"""Evaluate a trained run: a log-likelihood estimate on one split plus encoder diagnostics, written to
RUN/evaluation.json (the newest) and RUN/evaluations/<estimator>-<split>.json with per-point values."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from deepem.evaluation.evaluate import evaluate_model, evaluation_subset
from deepem.files import atomic_write_bytes, atomic_write_json
from deepem.workflows.loading import load_trained_run


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
    record.update(split=split, seed=seed, limit=limit, method=trained.config.method, dataset=trained.config.dataset,
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
