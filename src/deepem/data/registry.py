"""Dataset names -> loaders. `load_dataset(name)` is the one entry point the trainer and CLI use."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from deepem.data.base import DataSplits
from deepem.data.images import (
    BINARIZED_MNIST_NPZ,
    BINARIZED_MNIST_SIZES,
    CALTECH_NPZ,
    CALTECH_SIZES,
    DIGITS_SPLIT_SIZES,
    load_binarized_mnist,
    load_caltech101,
    load_digits_binary,
)
from deepem.data.mnist import FASHION_MNIST, MNIST, load_idx_dataset
from deepem.data.omniglot import OMNIGLOT_N_VALID, OMNIGLOT_SIZES, load_omniglot
from deepem.data.own_dataset import load_file_dataset
from deepem.data.paths import DATA_ENV_VAR, DatasetNotFoundError, resolve_data_dir
from deepem.data.tables import SUFFIXES, is_table_path
from deepem.data.uci import UCI_FILES, UCI_SUBDIR, load_uci, split_sizes

# Every loader takes (data_dir, download, seed); the ones that need none of them ignore them.
Loader = Callable[[Path, bool, int], DataSplits]


@dataclass(frozen=True)
class DatasetInfo:
    """A loader and what `deepem list` says about the dataset (tests check dim and splits against the data)."""

    loader: Loader
    description: str  # what it is
    dim: int  # features per data point
    splits: tuple[int, int, int]  # train / valid / test sizes
    source: str  # where the data come from; says whether a download is needed

    def summary(self) -> str:
        train, valid, test = self.splits
        return f"{self.description}; {self.dim}-dim, train/valid/test {train}/{valid}/{test}; {self.source}"


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


_NO_DOWNLOAD = "no download"
DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        _digits, "scikit-learn 8x8 digits, thresholded at 0.5, binary", 64, DIGITS_SPLIT_SIZES,
        "bundled with scikit-learn, no download"),
    "binarized-mnist": DatasetInfo(
        _binarized_mnist, "static binarized MNIST (Larochelle & Murray 2011)", 784, BINARIZED_MNIST_SIZES,
        f"file {BINARIZED_MNIST_NPZ} in the data dir, {_NO_DOWNLOAD}"),
    "caltech101": DatasetInfo(
        _caltech, "Caltech 101 Silhouettes 28x28, split 1, object = 1", 784, CALTECH_SIZES,
        f"file {CALTECH_NPZ} in the data dir, {_NO_DOWNLOAD}"),
    "mnist": DatasetInfo(
        _mnist, "grey-level MNIST, train binarised afresh every epoch, valid/test once", 784, (50000, 10000, 10000),
        "downloaded to mnist/ in the data dir (sha256-checked)"),
    "fashion-mnist": DatasetInfo(
        _fashion, "Fashion-MNIST, binarised like mnist", 784, (50000, 10000, 10000),
        "downloaded to fashion-mnist/ in the data dir (sha256-checked)"),
    "omniglot": DatasetInfo(
        load_omniglot, "Omniglot 28x28 of Burda et al. (chardata.mat), binarised like mnist", 784,
        (OMNIGLOT_SIZES[0] - OMNIGLOT_N_VALID, OMNIGLOT_N_VALID, OMNIGLOT_SIZES[1]),
        "downloaded to omniglot/ in the data dir (checksum not pinned)"),
    **{name: DatasetInfo(partial(_uci, name), description, dim, split_sizes(rows),
                         f"file {UCI_SUBDIR}/{UCI_FILES[name]} in the data dir, {_NO_DOWNLOAD}")
       for name, description, dim, rows in (
           ("banknote", "UCI banknote authentication, real features standardised", 4, 1372),
           ("breast-cancer", "UCI breast cancer Wisconsin (diagnostic), real features standardised", 30, 569),
           ("wine-red", "UCI wine quality (red), real features standardised", 11, 1599),
           ("wine-white", "UCI wine quality (white), real features standardised", 11, 4898))},
}


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True,
                 seed: int = 0) -> DataSplits:
    """Load a dataset by name as float32 (N, D) train/valid/test tensors.

    data_dir: where the files are; default the environment variable DEEPEM_DATA, else ~/.cache/deepem.
    download: allow fetching datasets that have a canonical URL and checksum (mnist, fashion-mnist,
        omniglot); with False a missing file raises DatasetNotFoundError.
    seed: seed of the one-time binarisation of the validation and test splits of dynamically binarised
        datasets (keep the default for results comparable with other runs). Train/valid/test splits
        themselves never depend on it, except for a file of one's own: a name that is the path of an
        existing .csv / .tsv / .npy / .npz file is read by `own_dataset.load_file_dataset`, its rows split
        0.8 / 0.1 / 0.1 with this seed (call that function for other fractions, a header setting, extra
        missingness, and the record of the split and scale)."""
    if is_table_path(name):
        return load_file_dataset(name, seed=seed).splits
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        hint = (f"; no file {name} exists" if Path(name).suffix.lower() in SUFFIXES else
                "; or give the path of a .csv, .tsv, .npy or .npz file")
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}{hint}")
    return DATASETS[key].loader(resolve_data_dir(data_dir), download, seed)


def load_recorded_dataset(name: str, data_dir: str | Path | None, download: bool = True, seed: int = 0
                          ) -> DataSplits:
    """`load_dataset` for a dataset location recorded in a run folder: on another machine (or after the
    data moved) the files may be elsewhere, and $DEEPEM_DATA says where, so look there before giving up."""
    try:
        return load_dataset(name, data_dir, download, seed)
    except DatasetNotFoundError as not_there:
        env = os.environ.get(DATA_ENV_VAR)
        if data_dir is None or not env or Path(env).expanduser() == Path(data_dir).expanduser():
            raise
        try:
            return load_dataset(name, env, download, seed)
        except DatasetNotFoundError:
            raise not_there from None
