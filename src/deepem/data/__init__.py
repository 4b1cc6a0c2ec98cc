"""Datasets: a registry of loaders that all return `DataSplits` (float32 (N, D) tensors)."""

from deepem.data.base import DataSplits, binarize
from deepem.data.download import ChecksumMismatchError, DownloadError
from deepem.data.paths import DatasetNotFoundError, resolve_data_dir
from deepem.data.registry import DATASETS, load_dataset

__all__ = [
    "DATASETS",
    "ChecksumMismatchError",
    "DataSplits",
    "DatasetNotFoundError",
    "DownloadError",
    "binarize",
    "load_dataset",
    "resolve_data_dir",
]
