"""One entry point for incomplete datasets, as `--missing SPEC` needs it: load a dataset by name,
corrupt it with a seed (`corruption.corrupt_splits`), and for tabular data standardise with the observed
training entries only (`standardize.restandardize_observed`)."""

from __future__ import annotations

from pathlib import Path

from deepem.data.base import DataSplits
from deepem.data.corruption import SPLITS, CorruptedData, CorruptionSpec, corrupt_splits
from deepem.data.registry import load_dataset
from deepem.data.standardize import restandardize_observed


def load_incomplete(name: str, spec: str | CorruptionSpec, seed: int = 0, data_dir: str | Path | None = None,
                    download: bool = True, splits: tuple[str, ...] = SPLITS, data_seed: int = 0
                    ) -> CorruptedData:
    """`load_dataset(name, data_dir, download, data_seed)` corrupted by `spec` ("mcar:0.5", "patches:3")
    with masks drawn from `seed`, for the named splits. Tabular data (no image shape, Gaussian
    likelihood) are re-standardised with the observed training statistics, the complete copy alike."""
    return make_incomplete(load_dataset(name, data_dir, download, data_seed), spec, seed, splits)


def make_incomplete(data: DataSplits, spec: str | CorruptionSpec, seed: int = 0,
                    splits: tuple[str, ...] = SPLITS) -> CorruptedData:
    """`data` corrupted by `spec` with masks from `seed`; tabular data re-standardised with the observed
    training entries (the complete copy with the same transform)."""
    corrupted = corrupt_splits(data, spec, seed, splits)
    if data.image_shape is None and data.likelihood == "gaussian":
        corrupted = restandardize_observed(corrupted)
    return corrupted
