"""Evaluate a trained run: a log-likelihood estimate on one split plus encoder diagnostics, written to
RUN/evaluation.json (the newest) and RUN/evaluations/<estimator>-<split>.json with per-point values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepem.evaluation.evaluate import evaluate_model, evaluation_subset
from deepem.files import atomic_write_bytes, atomic_write_json, npy_bytes
from deepem.workflows.loading import load_trained_run


def evaluate_run(run_dir: str | Path, estimator: str = "iw", particles: int = 5000, split: str = "test",
                 limit: int | None = None, seed: int = 0, batch_size: int = 100,
                 data_dir: str | None = None, device: str = "cpu", progress: bool = True,
                 observed: bool = False, **ais_options: Any) -> dict[str, Any]:
    """Evaluate the newest good checkpoint of a run and write the results into the run folder.

    A run trained on incomplete data (--missing) is evaluated on the complete split, log p(x) (IWEM's
    Table 3); with observed=True on the observed part of the corrupted copy of the split, log p(x_o)."""
    trained = load_trained_run(run_dir, data_dir=data_dir, device=device)
    if observed and trained.corrupted is None:
        raise ValueError(f"run {run_dir} was trained on complete data; --observed needs a run trained with "
                         "--missing")
    source = trained.corrupted.splits if observed else trained.data
    data, mask = source.split(split), source.mask(split) if observed else None
    if split == "train" and trained.config.train_limit is not None:
        data = data[: trained.config.train_limit]  # only the points the run was trained on
        mask = None if mask is None else mask[: trained.config.train_limit]
    n_split = data.shape[0]
    if limit is not None:
        subset = evaluation_subset(n_split, limit)
        data, mask = data[subset], None if mask is None else mask[subset]
    record, estimate = evaluate_model(trained.model, data, estimator, particles, seed, batch_size,
                                      progress, mask=mask, **ais_options)
    missing = trained.config.missing
    record["data"] = (f"observed part of the {split} split corrupted by {missing} (seed "
                      f"{trained.config.missing_seed}): log p(x_o)" if observed else
                      f"complete {split} split" + (f" (the run trained on data corrupted by {missing})"
                                                    if missing else ""))
    record.update(split=split, seed=seed, limit=limit, method=trained.config.method, dataset=trained.config.dataset,
                  checkpoint=trained.checkpoint.name, step=trained.step,
                  subset=f"fixed random {min(limit, n_split)} of {n_split}" if limit else f"all {n_split}")
    run = Path(run_dir)
    tag = f"{estimator}-{split}" + ("-observed" if observed else "")
    buffer = npy_bytes(estimate.per_point.numpy())
    atomic_write_bytes(run / "evaluations" / f"{tag}-per-point.npy", buffer)
    atomic_write_json(run / "evaluations" / f"{tag}.json", record, checksum=True)
    atomic_write_json(run / "evaluation.json", record, checksum=True)
    return record

