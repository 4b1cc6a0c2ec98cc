"""UCI tables for missing-data imputation (MIWAE-style experiments): real-valued features, Gaussian
likelihood, standardised with training statistics only."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from deepem.data.base import DataSplits
from deepem.data.images import to_tensor
from deepem.data.paths import DatasetNotFoundError, missing_data_message
from deepem.errors import DataFileFormatError

UCI_SUBDIR = "uci"
UCI_FILES = {
    "banknote": "banknote_authentication.csv",
    "breast-cancer": "breast_cancer_wdbc.csv",
    "wine-red": "winequality_red.csv",
    "wine-white": "winequality_white.csv",
}
# sha256 of the verified files of the benchmark data set-up (its README lists them); named in error messages.
UCI_SHA256 = {
    "banknote": "a4e6eb57f00dc0c5696badf6553001e8871644b5b98ab1b2869054af1d255125",
    "breast-cancer": "3df6821a97b59154efb1f79fbd20883f99751d5c12b381d2d1ca045061ab5db0",
    "wine-red": "228372b9c106bcbb50ce14bb616873495975bd761d2641cfd02900427f1ff8be",
    "wine-white": "0f9b72c6f593bd8b91edc4f5584f0939849e843c3584a4a2fa5b6f2e25be5277",
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


def read_numeric_csv(name: str, path: Path) -> np.ndarray:
    """The numbers below the header row of a comma-separated file. A cell that is not a finite number, or a
    row of the wrong length, raises DataFileFormatError naming the line (1-based, as an editor numbers
    lines, the header being line 1) and the column; numpy's own message names neither the file nor the line."""
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError:
        table = None
    if table is not None and np.isfinite(table).all():
        return table
    problem = _first_bad_cell(path)
    how = (f"every cell below the header must be a number: fix or delete that row, or replace the file with "
           f"the original (sha256 {UCI_SHA256[name]})" if name in UCI_SHA256 else
           "every cell below the header must be a number: fix or delete that row")
    raise DataFileFormatError(f"{name}: {path}: {problem or 'not a numeric table'}; {how}")


def _first_bad_cell(path: Path) -> str | None:
    """'line N, column C (header name): ...' for the first cell or row that np.loadtxt cannot use."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        for row in reader:
            if not row or row[0].lstrip().startswith("#"):
                continue  # np.loadtxt skips blank and comment lines too
            line = reader.line_num
            if len(row) != len(header):
                return f"line {line} has {len(row)} cells, the header (line 1) has {len(header)}"
            for col, cell in enumerate(row):
                column = f"column {col + 1} ({header[col].strip()})"
                if not cell.strip():
                    return f"line {line}, {column} is empty"
                try:
                    value = float(cell)
                except ValueError:
                    return f"line {line}, {column}: {cell.strip()!r} is not a number"
                if not math.isfinite(value):
                    return f"line {line}, {column}: {cell.strip()!r} is not a finite number"
    return None


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
    table = read_numeric_csv(name, path)
    if table.shape[1] < 2:
        raise DataFileFormatError(f"{name}: {path} must have at least one feature column before the label; "
                                  f"got shape {table.shape}")
    x = table[:, :-1]
    order = np.random.default_rng(UCI_SPLIT_SEED).permutation(x.shape[0])
    n_train, n_valid, _ = split_sizes(x.shape[0])
    train, valid, test = np.split(x[order], [n_train, n_train + n_valid])
    train, valid, test = standardize(train, valid, test)
    return DataSplits(name, to_tensor(train), to_tensor(valid), to_tensor(test),
                      likelihood="gaussian", image_shape=None)
