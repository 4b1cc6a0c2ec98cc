"""The imputation comparison of one split of a corrupted dataset (IWEM paper, Table 4): the model's
single imputation beside the column-mean and IterativeImputer baselines on the same masks, as a
JSON-ready dict a command line can write (`deepem impute`)."""

from __future__ import annotations

from typing import Any

from deepem.data.corruption import CorruptedData
from deepem.evaluation.imputation import impute
from deepem.evaluation.imputation_baselines import iterative_imputation, mean_imputation
from deepem.models.lvm import DeepLatentModel

BASELINES = ("mean", "iterative")


def imputation_summary(model: DeepLatentModel, corrupted: CorruptedData, split: str = "train",
                       particles: int = 1000, draws: int = 0, seed: int = 0, batch_size: int = 100,
                       proposal: str = "zero-filled", baselines: tuple[str, ...] = BASELINES,
                       fit_split: str | None = None) -> dict[str, Any]:
    """{"split", "missing", "n_missing", "model": summary, "mean": summary, "iterative": summary}.

    split: the split whose missing entries are imputed; "train" is the transductive setting of the
    MIWAE and IWEM UCI experiments (train on the incomplete table, impute its missing entries).
    fit_split: the split the baselines are fitted on (None: the imputed split itself).
    Every summary holds the mse over the missing entries of `split` against the complete data."""
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown imputation baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
    data, mask = corrupted.splits.split(split), corrupted.splits.mask(split)
    if mask is None:
        raise ValueError(f"the {split} split has no missing entries: nothing to impute")
    complete = corrupted.complete.split(split)
    out: dict[str, Any] = {"split": split, "missing": str(corrupted.spec), "corruption_seed": corrupted.seed,
                           "n_missing": int((~mask).sum())}
    out["model"] = impute(model, data, mask, particles, draws, complete, batch_size, seed,
                          proposal=proposal).summary()
    fit = {} if fit_split is None else {"fit_data": corrupted.splits.split(fit_split),
                                        "fit_mask": corrupted.splits.mask(fit_split)}
    if "mean" in baselines:
        out["mean"] = mean_imputation(data, mask, complete, **fit).summary()
    if "iterative" in baselines:
        out["iterative"] = iterative_imputation(data, mask, complete, seed=seed, **fit).summary()
    return out
