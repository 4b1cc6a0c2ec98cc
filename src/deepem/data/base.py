"""What every dataset loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class DataSplits:
    """Train / validation / test matrices, float32, shaped (N, D).

    dynamic_binarization=True means `train` holds grey levels in [0, 1] and every epoch draws a fresh
    Bernoulli sample of it (`binarize`); validation and test are binarised once, with a fixed seed, at
    load time, so that evaluations are comparable."""

    name: str
    train: Tensor
    valid: Tensor
    test: Tensor
    likelihood: str  # the likelihood that fits the data: "bernoulli" or "gaussian"
    image_shape: tuple[int, int] | None = None  # for sample grids; None for tabular data
    dynamic_binarization: bool = False
    # Observed-data masks (bool, shaped like the split, True = observed); None = fully observed. Where a
    # mask is False the value may be anything, NaN included: nothing reads it.
    train_mask: Tensor | None = None
    valid_mask: Tensor | None = None
    test_mask: Tensor | None = None

    @property
    def data_dim(self) -> int:
        return self.train.shape[1]

    def split(self, name: str) -> Tensor:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}; choose train, valid or test")
        return getattr(self, name)

    def mask(self, name: str) -> Tensor | None:
        """The observed-data mask of a split, or None when it is fully observed."""
        self.split(name)
        return getattr(self, f"{name}_mask")

    def train_mean(self) -> Tensor:
        """Mean of the training data over observed entries (for dynamic binarisation, the expected
        binary mean); a column with no observed entry gets 0.5."""
        return observed_mean(self.train, self.train_mask)


def observed_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Column means of `x` over the entries `mask` marks observed (all with None); a column with no
    observed entry gets 0.5."""
    if mask is None:
        return x.mean(0)
    total = torch.where(mask, x, torch.zeros_like(x)).sum(0)
    count = mask.to(x.dtype).sum(0)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, 0.5))


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x_binary ~ Bernoulli(x) elementwise, for grey levels x in [0, 1]."""
    return torch.bernoulli(x, generator=generator)
