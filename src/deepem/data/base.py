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

    @property
    def data_dim(self) -> int:
        return self.train.shape[1]

    def split(self, name: str) -> Tensor:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}; choose train, valid or test")
        return getattr(self, name)

    def train_mean(self) -> Tensor:
        """Mean of the training data (for dynamic binarisation, the expected binary mean)."""
        return self.train.mean(0)


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x_binary ~ Bernoulli(x) elementwise, for grey levels x in [0, 1]."""
    return torch.bernoulli(x, generator=generator)
