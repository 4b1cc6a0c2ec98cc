"""The imputation comparison of one split of a corrupted dataset (IWEM paper, Table 4): the model's
single imputation beside the column-mean and IterativeImputer baselines on the same masks, as a
JSON-ready dict a command line can write (`deepem impute`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepem.data.corruption import CorruptedData
from deepem.errors import InvalidInputError
from deepem.evaluation.imputation import ImputationResult, impute
from deepem.evaluation.imputation_baselines import iterative_imputation, mean_imputation
from deepem.files import atomic_write_bytes, atomic_write_json, npy_bytes
from deepem.models.lvm import DeepLatentModel
from deepem.report.figures import image_grid
from deepem.workflows.loading import load_trained_run

BASELINES = ("mean", "iterative")


def imputation_summary(model: DeepLatentModel, corrupted: CorruptedData, split: str = "train",
                       particles: int = 1000, draws: int = 0, seed: int = 0, batch_size: int = 100,
                       proposal: str = "zero-filled", baselines: tuple[str, ...] = BASELINES,
                       fit_split: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """{"split", "missing", "n_missing", "model": summary, "mean": summary, "iterative": summary}.

    split: the split whose missing entries are imputed; "train" is the transductive setting of the
    MIWAE and IWEM UCI experiments (train on the incomplete table, impute its missing entries).
    fit_split: the split the baselines are fitted on (None: the imputed split itself, all of it).
    limit: impute only the first `limit` points of the split (None: all).
    Every summary holds the mse over the missing entries of `split` against the complete data."""
    return imputation_with_baselines(model, corrupted, split, particles, draws, seed, batch_size, proposal,
                                     baselines, fit_split, limit)[0]


def imputation_with_baselines(model: DeepLatentModel, corrupted: CorruptedData, split: str = "train",
                              particles: int = 1000, draws: int = 0, seed: int = 0, batch_size: int = 100,
                              proposal: str = "zero-filled", baselines: tuple[str, ...] = BASELINES,
                              fit_split: str | None = None, limit: int | None = None
                              ) -> tuple[dict[str, Any], ImputationResult]:
    """`imputation_summary` and the model's ImputationResult (the imputed arrays) behind it."""
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise InvalidInputError(f"unknown imputation baseline(s) {', '.join(unknown)}; "
                                f"choose from {', '.join(BASELINES)}")
    data, mask = corrupted.splits.split(split), corrupted.splits.mask(split)
    if mask is None:
        raise InvalidInputError(f"the {split} split has no missing entries: nothing to impute")
    complete = corrupted.complete.split(split)
    # With a limit the baselines are still fitted on the whole split (fit_split's default), so their error on
    # the first `limit` points is what they would make on those points in the full imputation.
    fit_split = fit_split if fit_split is not None or limit is None else split
    fit = {} if fit_split is None else {"fit_data": corrupted.splits.split(fit_split),
                                        "fit_mask": corrupted.splits.mask(fit_split)}
    if limit is not None:
        data, mask, complete = data[:limit], mask[:limit], complete[:limit]
    out: dict[str, Any] = {"split": split, "missing": str(corrupted.spec), "corruption_seed": corrupted.seed,
                           "n_missing": int((~mask).sum()), "n_points": int(data.shape[0]), "limit": limit}
    result = impute(model, data, mask, particles, draws, complete, batch_size, seed, proposal=proposal)
    out["model"] = result.summary()
    if "mean" in baselines:
        out["mean"] = mean_imputation(data, mask, complete, **fit).summary()
    if "iterative" in baselines:
        out["iterative"] = iterative_imputation(data, mask, complete, seed=seed, **fit).summary()
    return out, result


def run_imputation(run_dir: str | Path, split: str = "train", particles: int = 1000, draws: int = 0,
                   seed: int = 0, proposal: str = "zero-filled", data_dir: str | None = None,
                   baselines: tuple[str, ...] = BASELINES, figure_points: int = 8,
                   limit: int | None = None) -> dict[str, Any]:
    """`deepem impute`: impute the missing entries of a split (its first `limit` points, or all) of the
    run's incomplete data, write
    RUN/imputation.json (mse over missing entries beside the baselines', n_missing, particles, split),
    RUN/imputation/imputed-SPLIT.npy (and draws-SPLIT.npy for multiple imputation) and, for images,
    RUN/figures/imputation-SPLIT.png (rows: observed, truth, imputed; IWEM paper Figure 5)."""
    trained = load_trained_run(run_dir, data_dir=data_dir)
    if trained.corrupted is None:
        raise InvalidInputError(f"run {run_dir} was trained on complete data: there is nothing to impute. Train with "
                         "--missing mcar:P or --missing patches:N")
    summary, result = imputation_with_baselines(trained.model, trained.corrupted, split, particles, draws, seed,
                                                proposal=proposal, baselines=baselines, limit=limit)
    summary.update(particles=particles, draws=draws, method=trained.config.method,
                   checkpoint=trained.checkpoint.name, step=trained.step)
    run = Path(run_dir)
    atomic_write_bytes(run / "imputation" / f"imputed-{split}.npy", npy_bytes(result.imputed.numpy()))
    if result.draws is not None:
        atomic_write_bytes(run / "imputation" / f"draws-{split}.npy", npy_bytes(result.draws.numpy()))
    shape = trained.data.image_shape
    if shape is not None:
        n = min(figure_points, result.imputed.shape[0])
        mask = trained.corrupted.splits.mask(split)[:n]
        truth = trained.corrupted.complete.split(split)[:n]
        shown = torch.where(mask, truth, torch.full_like(truth, 0.5))  # missing pixels in mid grey
        grid = torch.cat([shown, truth, result.imputed[:n].clamp(0, 1)])
        image_grid(grid, shape, run / "figures" / f"imputation-{split}.png", columns=n,
                   title=f"observed (missing grey) / truth / imputed ({result.estimator})")
    atomic_write_json(run / "imputation.json", summary, checksum=True)
    return summary
