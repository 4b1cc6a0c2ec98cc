"""Dataset names -> loaders. `load_dataset(name)` is the one entry point the trainer and CLI use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from deepem.data.base import DataSplits
from deepem.data.images import load_binarized_mnist, load_caltech101, load_digits_binary
from deepem.data.mnist import FASHION_MNIST, MNIST, load_idx_dataset
from deepem.data.omniglot import load_omniglot
from deepem.data.paths import resolve_data_dir
from deepem.data.uci import load_uci

# Every loader takes (data_dir, download, seed); the ones that need none of them ignore them.
Loader = Callable[[Path, bool, int], DataSplits]


@dataclass(frozen=True)
class DatasetInfo:
    loader: Loader
    description: str


def _digits(data_dir: Path, download: bool, seed: int) -> DataSplits:
    return load_digits_binary()


def _binarized_mnist(data_dir: Path, download: bool, seed: int) -> DataSplits:
    return load_binarized_mnist(data_dir)


def _caltech(data_dir: Path, download: bool, seed: int) -> DataSplits:
    return load_caltech101(data_dir)


def _mnist(data_dir: Path, download: bool, seed: int) -> DataSplits:
    return load_idx_dataset(MNIST, data_dir, download, seed)


def _fashion(data_dir: Path, download: bool, seed: int) -> DataSplits:
    return load_idx_dataset(FASHION_MNIST, data_dir, download, seed)


def _uci(name: str, data_dir: Path, download: bool, seed: int) -> DataSplits:
    return load_uci(name, data_dir)


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        _digits, "scikit-learn 8x8 digits thresholded at 0.5, 1257/270/270, 64-dim binary; "
                 "bundled, no download"),
    "binarized-mnist": DatasetInfo(
        _binarized_mnist, "static binarized MNIST (Larochelle & Murray 2011), 50000/10000/10000, 784-dim; "
                          "file binarized_mnist.npz"),
    "caltech101": DatasetInfo(
        _caltech, "Caltech 101 Silhouettes 28x28 split 1, 4100/2264/2307, 784-dim, object = 1; "
                  "file caltech101_silhouettes_28.npz"),
    "mnist": DatasetInfo(
        _mnist, "grey-level MNIST, dynamically binarised train 50000, valid/test 10000 binarised once; "
                "downloaded to mnist/ (sha256-checked)"),
    "fashion-mnist": DatasetInfo(
        _fashion, "Fashion-MNIST, treated like mnist (dynamic binarisation); "
                  "downloaded to fashion-mnist/ (sha256-checked)"),
    "omniglot": DatasetInfo(
        load_omniglot, "Omniglot 28x28 of Burda et al. (chardata.mat), 23000/1345/8070, "
                       "dynamic binarisation; downloaded to omniglot/ (checksum not pinned)"),
    "banknote": DatasetInfo(
        partial(_uci, "banknote"), "UCI banknote authentication, 4 real features, standardised; "
                                   "file uci/banknote_authentication.csv"),
    "breast-cancer": DatasetInfo(
        partial(_uci, "breast-cancer"), "UCI breast cancer Wisconsin (diagnostic), 30 real features, "
                                        "standardised; file uci/breast_cancer_wdbc.csv"),
    "wine-red": DatasetInfo(
        partial(_uci, "wine-red"), "UCI wine quality (red), 11 real features, standardised; "
                                   "file uci/winequality_red.csv"),
    "wine-white": DatasetInfo(
        partial(_uci, "wine-white"), "UCI wine quality (white), 11 real features, standardised; "
                                     "file uci/winequality_white.csv"),
}


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True,
                 seed: int = 0) -> DataSplits:
    """Load a dataset by name as float32 (N, D) train/valid/test tensors.

    data_dir: where the files are; default the environment variable DEEPEM_DATA, else ~/.cache/deepem.
    download: allow fetching datasets that have a canonical URL and checksum (mnist, fashion-mnist,
        omniglot); with False a missing file raises DatasetNotFoundError.
    seed: seed of the one-time binarisation of the validation and test splits of dynamically binarised
        datasets (keep the default for results comparable with other runs). Train/valid/test splits
        themselves never depend on it."""
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[key].loader(resolve_data_dir(data_dir), download, seed)
