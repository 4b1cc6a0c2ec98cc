"""The imputation comparison of one split of a corrupted dataset (IWEM paper, Table 4): the model's
single imputation beside the column-mean and IterativeImputer baselines on the same masks, as a
JSON-ready dict a command line can write (`deepem impute`). `--limit` applies to everything: the model
and the baselines see the same first N points, and the baselines are fitted on those points alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepem.data.corruption import CorruptedData
from deepem.errors import InvalidInputError
from deepem.evaluation.imputation import ImputationResult, impute
from deepem.evaluation.imputation_baselines import (
    ITERATIVE_MAX_CELLS,
    ITERATIVE_MAX_COLUMNS,
    iterative_imputation,
    mean_imputation,
)
from deepem.files import atomic_write_bytes, atomic_write_json, npy_bytes
from deepem.models.lvm import DeepLatentModel
from deepem.report.imputation import imputation_chart
from deepem.workflows.assembly import is_file_dataset
from deepem.workflows.loading import load_trained_run
from deepem.workflows.memory import NUMBER_BYTES, require_memory
from deepem.workflows.own_runs import default_proposal

BASELINES = ("mean", "iterative")
#: `deepem impute --baselines`: none, the column mean, or the column mean and IterativeImputer
BASELINE_CHOICES = {"none": (), "mean": ("mean",), "iterative": ("mean", "iterative")}
BASELINES_HELP = (f"model-free baselines on the same masks: none, mean (column mean), or iterative (column mean and "
                  f"scikit-learn's IterativeImputer; above {ITERATIVE_MAX_CELLS} cells it is fitted on a random "
                  f"subsample of rows, above {ITERATIVE_MAX_COLUMNS} columns each column on its nearest 20, and the "
                  "summary says so)")


def imputation_summary(model: DeepLatentModel, corrupted: CorruptedData, split: str = "train",
                       particles: int = 1000, draws: int = 0, seed: int = 0, batch_size: int = 100,
                       proposal: str = "zero-filled", baselines: tuple[str, ...] = BASELINES,
                       fit_split: str | None = None, limit: int | None = None,
                       progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """{"split", "missing", "n_missing", "model": summary, "mean": summary, "iterative": summary}.

    split: the split whose missing entries are imputed; "train" is the transductive setting of the
    MIWAE and IWEM UCI experiments (train on the incomplete table, impute its missing entries).
    fit_split: the split the baselines are fitted on (None: the imputed points themselves).
    limit: impute only the first `limit` points of the split (None: all), baselines too.
    Every summary holds the mse over the missing entries of `split` against the complete data."""
    return imputation_with_baselines(model, corrupted, split, particles, draws, seed, batch_size, proposal,
                                     baselines, fit_split, limit, progress)[0]


def imputation_with_baselines(model: DeepLatentModel, corrupted: CorruptedData, split: str = "train",
                              particles: int = 1000, draws: int = 0, seed: int = 0, batch_size: int = 100,
                              proposal: str = "zero-filled", baselines: tuple[str, ...] = BASELINES,
                              fit_split: str | None = None, limit: int | None = None,
                              progress: Callable[[int], None] | None = None
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
    fit = {} if fit_split is None else {"fit_data": corrupted.splits.split(fit_split)[:limit],
                                        "fit_mask": corrupted.splits.mask(fit_split)[:limit]}
    if limit is not None:  # the same points for the model and the baselines (fitted on them alone)
        data, mask, complete = data[:limit], mask[:limit], complete[:limit]
    out: dict[str, Any] = {"split": split, "missing": str(corrupted.spec), "corruption_seed": corrupted.seed,
                           "n_missing": int((~mask).sum()), "n_points": int(data.shape[0]), "limit": limit}
    result = impute(model, data, mask, particles, draws, complete, batch_size, seed, proposal=proposal,
                    progress=progress)
    out["model"] = result.summary()
    if "mean" in baselines:
        out["mean"] = mean_imputation(data, mask, complete, **fit).summary()
    if "iterative" in baselines:
        out["iterative"] = iterative_imputation(data, mask, complete, seed=seed, **fit).summary()
    return out, result


def run_imputation(run_dir: str | Path, split: str = "train", particles: int = 1000, draws: int = 0,
                   seed: int = 0, proposal: str | None = "zero-filled", data_dir: str | None = None,
                   baselines: tuple[str, ...] = BASELINES, figure_points: int = 8,
                   limit: int | None = None, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """`deepem impute`: impute the missing entries of a split (its first `limit` points, or all) of the
    run's incomplete data, write
    RUN/imputation.json (mse over missing entries beside the baselines', n_missing, particles, split),
    RUN/imputation/imputed-SPLIT.npy (and draws-SPLIT.npy for multiple imputation) and, for images,
    RUN/figures/imputation-SPLIT.png (rows: observed with missing pixels orange, truth, imputed in blue;
    IWEM paper Figure 5, titled with the step of the parameters used). progress: as `impute`'s."""
    trained = load_trained_run(run_dir, data_dir=data_dir)
    if trained.corrupted is None and is_file_dataset(trained.config.dataset):
        raise InvalidInputError(f"run {run_dir} was trained on the file {trained.config.dataset}: fill its missing "
                                f"cells with --input {trained.config.dataset} --output FILE")
    if trained.corrupted is None:
        raise InvalidInputError(f"run {run_dir} was trained on complete data: there is nothing to impute. Train with "
                                "--missing mcar:P or --missing patches:N, or give rows with missing cells with "
                                "--input FILE --output FILE")
    if draws:
        split_rows = getattr(trained.corrupted.splits, split).shape[0]
        n_rows = split_rows if limit is None else min(limit, split_rows)
        require_memory(3 * draws * n_rows * trained.model.data_dim * NUMBER_BYTES,
                       f"{draws} multiple imputations of {n_rows} rows of {trained.model.data_dim} columns",
                       "ask for fewer --draws, or fewer rows (--limit)")
    proposal = proposal or default_proposal(trained.config.method)  # None: the one the method trained
    summary, result = imputation_with_baselines(trained.model, trained.corrupted, split, particles, draws, seed,
                                                proposal=proposal, baselines=baselines, limit=limit,
                                                progress=progress)
    summary.update(particles=particles, draws=draws, method=trained.config.method,
                   checkpoint=trained.checkpoint.name, step=trained.step)
    run = Path(run_dir)
    atomic_write_bytes(run / "imputation" / f"imputed-{split}.npy", npy_bytes(result.imputed.numpy()))
    if result.draws is not None:
        atomic_write_bytes(run / "imputation" / f"draws-{split}.npy", npy_bytes(result.draws.numpy()))
    shape = trained.data.image_shape
    if shape is not None:
        n = min(figure_points, result.imputed.shape[0])
        imputation_chart(trained.corrupted.complete.split(split)[:n], trained.corrupted.splits.mask(split)[:n],
                         {f"{trained.config.method}\n(blue)": result.imputed[:n].clamp(0, 1)}, shape,
                         run / "figures" / f"imputation-{split}.png",
                         title=f"{split} split, {trained.corrupted.spec}: parameters of step {trained.step}, "
                               f"K={particles}, {proposal} proposal")
    atomic_write_json(run / "imputation.json", summary, checksum=True)
    return summary
