"""UCI tables for missing-data imputation (MIWAE-style experiments): real-valued features, Gaussian
likelihood, standardised with training statistics only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepem.data.base import DataSplits
from deepem.data.images import to_tensor
from deepem.data.paths import DatasetNotFoundError, missing_data_message

UCI_SUBDIR = "uci"
UCI_FILES = {
    "banknote": "banknote_authentication.csv",
    "breast-cancer": "breast_cancer_wdbc.csv",
    "wine-red": "winequality_red.csv",
    "wine-white": "winequality_white.csv",
}
# Fixed, so that the split is part of the dataset and does not move with the training seed.
UCI_SPLIT_SEED = 1234
UCI_VALID_FRACTION = 0.1
UCI_TEST_FRACTION = 0.1


def split_sizes(n: int) -> tuple[int, int, int]:
    """80/10/10: valid and test get floor(n/10) rows each, train the rest."""
    n_valid = int(n * UCI_VALID_FRACTION)
    n_test = int(n * UCI_TEST_FRACTION)
    return n - n_valid - n_test, n_valid, n_test


def standardize(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x - mean_train) / std_train for every array. Statistics come from the training rows only, so no
    information leaks from validation or test data. A constant column gets std 1 (it stays constant)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return tuple((a - mean) / std for a in (train, *others))


def load_uci(name: str, data_dir: Path) -> DataSplits:
    """One UCI table from `<data_dir>/uci/<file>.csv` (header row; last column is the label and is dropped),
    split 80/10/10 by a fixed-seed permutation and standardised with the training mean and std."""
    if name not in UCI_FILES:
        raise ValueError(f"unknown UCI table {name!r}; choose one of {', '.join(UCI_FILES)}")
    path = data_dir / UCI_SUBDIR / UCI_FILES[name]
    if not path.is_file():
        raise DatasetNotFoundError(missing_data_message(
            name, [path],
            f"Provide {UCI_FILES[name]} (comma-separated, one header row, last column the label) in "
            f"{data_dir / UCI_SUBDIR}. No automatic download."))
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    if table.shape[1] < 2 or not np.isfinite(table).all():
        raise ValueError(f"{name}: {path} must be a numeric table with no missing values and at least one "
                         f"feature column before the label; got shape {table.shape}")
    x = table[:, :-1]
    order = np.random.default_rng(UCI_SPLIT_SEED).permutation(x.shape[0])
    n_train, n_valid, _ = split_sizes(x.shape[0])
    train, valid, test = np.split(x[order], [n_train, n_train + n_valid])
    train, valid, test = standardize(train, valid, test)
    return DataSplits(name, to_tensor(train), to_tensor(valid), to_tensor(test),
                      likelihood="gaussian", image_shape=None)
