"""Checks of a dataset before any training: every split, every value, so that a wrong file fails at
once with a message that names the split and the problem, not hours later as a NaN."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from deepem.data.base import DataSplits
from deepem.errors import UserError


class DataError(UserError, ValueError):
    """Data that cannot be trained on as configured; the message names the split and the fix."""


def check_split(name: str, x: object, data_dim: int | None = None) -> None:
    """Shape, dtype and finiteness of one split."""
    if not isinstance(x, Tensor):
        raise DataError(f"{name} split: expected a torch.Tensor, got {type(x).__name__}; "
                        "convert with torch.as_tensor(x, dtype=torch.float32)")
    if x.dim() != 2:
        raise DataError(f"{name} split: expected a matrix shaped (points, features), got shape "
                        f"{tuple(x.shape)}; flatten images with x.reshape(len(x), -1)")
    if not x.is_floating_point():
        raise DataError(f"{name} split: expected floating-point values, got dtype {x.dtype}; "
                        "convert with x.float()")
    if data_dim is not None and x.shape[1] != data_dim:
        raise DataError(f"{name} split has {x.shape[1]} features but the training split has {data_dim}; "
                        "all splits must have the same number of columns")
    if x.numel() and not torch.isfinite(x).all():
        bad = ~torch.isfinite(x)
        rows = bad.any(1).nonzero().flatten()
        raise DataError(f"{name} split contains {int(bad.sum())} NaN/inf values in {rows.numel()} rows "
                        f"(first rows {rows[:5].tolist()}); remove or impute them before training")


def check_values(name: str, x: Tensor, likelihood_check: Callable[..., None], mask: Tensor | None = None) -> None:
    """The likelihood's own check of a split's values (binary data for a Bernoulli likelihood), as a
    DataError naming the split. The mask is passed only when there is one (NaN allowed where False)."""
    if x.shape[0] == 0:
        return
    try:
        likelihood_check(x) if mask is None else likelihood_check(x, mask=mask)
    except ValueError as err:
        raise DataError(f"{name} split: {err}") from err


def check_data(data: DataSplits, likelihood_check: Callable[..., None], need_valid: bool) -> None:
    """Check every split of `data`; `likelihood_check(x)` is the model's own value check (binary data
    for a Bernoulli likelihood), raising ValueError."""
    def observed(name: str) -> Tensor:  # missing entries (mask False) may hold NaN: check the rest
        x, m = data.split(name), data.mask(name)
        return x if m is None else torch.where(m, x, torch.zeros((), dtype=x.dtype))

    check_split("train", observed("train"))
    if data.train.shape[0] == 0:
        raise DataError("train split is empty; a dataset needs at least one training point")
    for name in ("valid", "test"):
        check_split(name, observed(name), data.data_dim)
    if need_valid and data.valid.shape[0] == 0:
        raise DataError("valid split is empty but validation is on; set valid_every = 0 (--valid-every 0) "
                        "or provide validation data")
    for name in ("train", "valid", "test"):
        x = getattr(data, name)
        if x.shape[0] == 0:
            continue
        if name == "train" and data.dynamic_binarization:
            lo, hi = float(observed(name).min()), float(observed(name).max())
            if lo < 0 or hi > 1:
                raise DataError(f"train split: dynamic binarisation needs grey levels in [0, 1], got values "
                                f"in [{lo:.3g}, {hi:.3g}]; rescale the data (e.g. divide by 255)")
            continue  # grey levels: the likelihood sees their binarised draws
        check_values(name, x, likelihood_check, data.mask(name))
