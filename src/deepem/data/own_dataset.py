"""A user's file as a dataset: seeded train / validation / test splits, optional extra missingness, and
standardisation with the observed training entries, each recorded as JSON so that a run can rebuild the
same data, refuse a changed file, and return every output on the file's own scale.

Tables get a Gaussian likelihood and are standardised per column. Images (an (N, H, W) array) with
values in [0, 1] get a Bernoulli likelihood and are left as they are; other images are standardised per
pixel like a table (a constant pixel gets std 1)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deepem.data.base import DataSplits
from deepem.data.corruption import SPLITS, CorruptionSpec, parse_corruption, with_nan
from deepem.data.standardize import observed_moments
from deepem.data.tables import TableFile, check_trainable, read_table
from deepem.errors import UserError
from deepem.files import sha256_file

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


class FileChangedError(UserError, ValueError):
    """A run's data file is not the file it was trained on."""


class SplitSettingError(UserError, ValueError):
    """Split fractions that do not make three splits."""


def check_sha256(path: str | Path, expected: str) -> None:
    """Refuse `path` unless its sha256 is `expected` (one line with both checksums)."""
    actual = sha256_file(Path(path))
    if actual != expected:
        raise FileChangedError(f"{path} has changed since the run recorded it: recorded sha256 {expected}, the "
                               f"file now has sha256 {actual}; restore the original file or start a new run")


def parse_fractions(text: str | tuple[float, ...] | list[float]) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' (or a sequence) -> train / validation / test fractions that sum to 1."""
    try:
        parts = [float(p) for p in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(not 0 <= p <= 1 for p in parts) or abs(sum(parts) - 1) > 1e-6 or parts[0] == 0:
        raise SplitSettingError(f"invalid split {text!r}: give three fractions train,valid,test that sum to 1, "
                        "e.g. 0.8,0.1,0.1")
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class SplitRecord:
    """Which rows of the file went to which split, and the seed and fractions that drew them."""

    seed: int
    fractions: tuple[float, float, float]
    train: list[int]
    valid: list[int]
    test: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "fractions": list(self.fractions), "train": self.train, "valid": self.valid,
                "test": self.test}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitRecord:
        return cls(int(d["seed"]), tuple(d["fractions"]), list(d["train"]), list(d["valid"]), list(d["test"]))


def draw_splits(n_rows: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0
                ) -> SplitRecord:
    """A seeded random partition of range(n_rows): round(f * n) validation and test rows, the rest train."""
    fractions = parse_fractions(fractions)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed)).tolist()
    n_valid, n_test = round(fractions[1] * n_rows), round(fractions[2] * n_rows)
    n_train = n_rows - n_valid - n_test
    return SplitRecord(seed, fractions, sorted(order[:n_train]), sorted(order[n_train:n_train + n_valid]),
                       sorted(order[n_train + n_valid:]))


@dataclass(frozen=True)
class Standardization:
    """Per-column mean and std: model units = (file units - mean) / std."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, values: np.ndarray, mask: np.ndarray) -> Standardization:
        """Mean and population std of the observed entries of each column (`observed_moments`)."""
        mean, std = observed_moments(torch.from_numpy(np.nan_to_num(values)), torch.from_numpy(mask))
        return cls(mean.tolist(), std.tolist())

    def apply(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.std)

    def invert(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * np.asarray(self.std) + np.asarray(self.mean)

    def log_jacobian(self, mask: np.ndarray) -> np.ndarray:
        """Per row, sum of -log std over its observed columns: log p(file units) = log p(model units) + this."""
        return -(np.asarray(mask, dtype=np.float64) * np.log(np.asarray(self.std))).sum(axis=-1)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Standardization | None:
        return None if d is None else cls(list(d["mean"]), list(d["std"]))


@dataclass
class FileDataset:
    """A file's `DataSplits` (model units, NaN where missing, masks) with everything needed to redo it."""

    splits: DataSplits
    table: TableFile
    split: SplitRecord
    standardization: Standardization | None
    missing: str | None = None
    missing_seed: int = 0

    def record(self) -> dict[str, Any]:
        """JSON-able: the file (path, sha256, format, header), the splits, the extra missingness, the scale."""
        t = self.table
        return {"path": str(t.path.resolve()), "sha256": t.sha256, "format": t.kind, "header": t.has_header,
                "columns": t.columns, "image_shape": list(t.image_shape) if t.image_shape else None,
                "npz_key": t.npz_key, "likelihood": self.splits.likelihood, "split": self.split.to_dict(),
                "missing": self.missing, "missing_seed": self.missing_seed,
                "standardization": None if self.standardization is None else self.standardization.to_dict()}


def add_missing(data: DataSplits, spec: str | CorruptionSpec, seed: int) -> DataSplits:
    """More missingness on top of the file's own: masks drawn by `spec` from `seed` (train, valid, test
    in that order, as `corruption.corrupt_splits`) and combined with the existing ones."""
    spec = parse_corruption(spec) if isinstance(spec, str) else spec
    generator = torch.Generator().manual_seed(seed)
    changes: dict[str, Tensor] = {}
    for name in SPLITS:
        x, old = data.split(name), data.mask(name)
        mask = spec.masks(x.shape[0], x.shape[1], data.image_shape, generator)
        mask = mask if old is None else mask & old
        changes[name], changes[f"{name}_mask"] = with_nan(x, mask), mask
    return replace(data, **changes)


def is_unit_interval(table: TableFile) -> bool:
    seen = table.values[table.mask]
    return bool(seen.size) and bool(seen.min() >= 0) and bool(seen.max() <= 1)


def load_file_dataset(path: str | Path, seed: int = 0, fractions: tuple[float, float, float] | str = DEFAULT_FRACTIONS,
                      header: bool | None = None, npz_key: str | None = None, missing: str | None = None,
                      missing_seed: int = 0, sha256: str | None = None) -> FileDataset:
    """Read `path` (`tables.read_table`), check it can be trained on, split its rows with `seed`, add
    `missing` ("mcar:P", "patches:N") with `missing_seed`, and standardise with the observed training
    entries. sha256: the checksum a run recorded; a different file is refused (`check_sha256`)."""
    if sha256 is not None:
        check_sha256(path, sha256)
    table = read_table(path, header, npz_key)
    check_trainable(table)
    split = draw_splits(table.n_rows, parse_fractions(fractions), seed)
    bernoulli = table.image_shape is not None and is_unit_interval(table)
    parts = {name: (table.values[rows], table.mask[rows]) for name, rows in
             (("train", split.train), ("valid", split.valid), ("test", split.test))}
    data = DataSplits(
        name=table.path.name, likelihood="bernoulli" if bernoulli else "gaussian", image_shape=table.image_shape,
        **{name: torch.from_numpy(v) for name, (v, _) in parts.items()},
        **{f"{name}_mask": torch.from_numpy(m.copy()) for name, (_, m) in parts.items()})
    if missing:
        data = add_missing(data, missing, missing_seed)
    scale = None
    if not bernoulli:  # statistics in float64 from the file's own numbers, then float32 for the model
        scale = Standardization.fit(data.train.numpy(), data.train_mask.numpy())
        data = replace(data, **{s: torch.from_numpy(scale.apply(data.split(s).numpy())) for s in SPLITS})
    data = replace(data, **{s: data.split(s).float() for s in SPLITS})
    return FileDataset(data, table, split, scale, missing, missing_seed)


def model_rows(table: TableFile, scale: Standardization | None) -> tuple[Tensor, Tensor]:
    """(rows in model units with NaN where missing, mask) of any table with the run's columns."""
    values = table.values if scale is None else scale.apply(table.values)
    return torch.from_numpy(values), torch.from_numpy(table.mask.copy())


def file_units(values: Tensor | np.ndarray, scale: Standardization | None) -> np.ndarray:
    """Model-unit values back on the file's own scale."""
    values = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else np.asarray(values)
    return values if scale is None else scale.invert(values)
