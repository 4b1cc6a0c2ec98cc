"""Standardisation of incomplete tabular data with statistics of the observed training entries only.

`uci.standardize` uses the mean and std of the complete training rows. Once features are removed those
statistics would leak the removed values into the data a method sees (Mattei & Frellsen's MIWAE code
standardises the complete table before corrupting it). The masked variant uses, per column, the mean
and (population) std of the observed training entries only.

Standardisation is affine, so re-standardising data that `uci.standardize` already standardised gives,
up to rounding, the same numbers as standardising the raw table with the observed statistics:
`restandardize_observed` can be applied to a `CorruptedData` of a UCI table as loaded."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from deepem.data.base import DataSplits
from deepem.data.corruption import SPLITS, CorruptedData


def observed_moments(train: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column mean and std of the observed entries of `train` (float64 accumulation). A column with
    no observed entry gets mean 0 and std 1; one with a constant observed value gets std 1. Statistics
    that overflow (an observed 1e300) raise a ValueError: the callers refuse such values first."""
    m = mask.to(torch.float64)
    values = torch.where(mask, train, torch.zeros((), dtype=train.dtype)).to(torch.float64)
    count = m.sum(0)
    mean = values.sum(0) / count.clamp_min(1)
    var = (((values - mean) * m) ** 2).sum(0) / count.clamp_min(1)
    std = torch.sqrt(var)
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):  # a reader let through what overflows
        raise ValueError("the observed mean or std of a column is not finite (its values overflow float64 when "
                         "squared); refuse such values when reading (tables.check_rows, check_finite_table)")
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def standardize_observed(train: Tensor, train_mask: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """(x - mean) / std for train and every other array, with the observed training statistics
    (`observed_moments`); missing entries (NaN) stay NaN. Dtypes are kept."""
    mean, std = observed_moments(train, train_mask)
    return tuple(((a.to(torch.float64) - mean) / std).to(a.dtype) for a in (train, *others))


def _apply(data: DataSplits, mean: Tensor, std: Tensor) -> DataSplits:
    return replace(data, **{s: ((data.split(s).to(torch.float64) - mean) / std).to(data.split(s).dtype)
                            for s in SPLITS})


def restandardize_observed(corrupted: CorruptedData) -> CorruptedData:
    """The same corrupted data standardised with the observed training statistics; the complete copy is
    transformed identically, so imputation errors are measured in the units the model sees."""
    train_mask = corrupted.splits.train_mask
    if train_mask is None:
        return corrupted
    mean, std = observed_moments(corrupted.splits.train, train_mask)
    return replace(corrupted, splits=_apply(corrupted.splits, mean, std),
                   complete=_apply(corrupted.complete, mean, std))
