"""The data order of an epoch. Epoch e's permutation and dynamic binarisation come from a generator
seeded by (seed, e) alone, so they need no checkpointed state and a resumed run sees the same batches."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from deepem.data.corruption import binarize_observed


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch `epoch`'s data order and binarisation, independent of anything else."""
    return torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + epoch)


def batches_per_epoch(n_points: int, batch_size: int) -> int:
    return math.ceil(n_points / batch_size)


def epoch_data(train: Tensor, seed: int, epoch: int, dynamic_binarization: bool, mask: Tensor | None = None
               ) -> tuple[Tensor, Tensor]:
    """(order, data) of epoch `epoch`: a permutation of the rows, and the rows (binarised afresh each
    epoch when `dynamic_binarization`; missing entries, where `mask` is False, stay missing)."""
    gen = epoch_generator(seed, epoch)
    order = torch.randperm(train.shape[0], generator=gen)
    return order, binarize_observed(train, mask, gen) if dynamic_binarization else train


def batch_indices(order: Tensor, batch: int, batch_size: int) -> Tensor:
    return order[batch * batch_size:(batch + 1) * batch_size]
