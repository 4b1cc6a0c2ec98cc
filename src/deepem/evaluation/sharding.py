"""Sharded evaluation: the batches of an evaluation split over the ranks of a job, with results equal
to one process's.

The estimators draw every batch's particles from one seeded generator, in batch order, so a point's
draws depend on everything drawn before its batch. A rank therefore takes a contiguous block of
batches and, for the batches before its block, *replays* the draws without the costly part (the
decoder): the same random calls with the same shapes leave the generator exactly where one process
would have it. Per-point results are then gathered in rank order, which is batch order: the output
equals a single-process evaluation with the same seed and batch size (up to the floating-point
effects of a different number of threads). Only whole batches are shared: use at least N batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Shard:
    """This process's part of a sharded evaluation: rank of world, and `gather`, which returns every
    rank's tensor concatenated in rank order (a collective; the workflows layer provides it)."""

    rank: int
    world: int
    gather: Callable[[Tensor], Tensor]

    def block(self, n_batches: int) -> range:
        """This rank's contiguous block of batch indices (sizes differ by at most one)."""
        sizes = [len(p) for p in torch.tensor_split(torch.arange(n_batches), self.world)]
        start = sum(sizes[: self.rank])
        return range(start, start + sizes[self.rank])


def batch_plan(n_points: int, batch_size: int, shard: Shard | None) -> list[tuple[int, bool]]:
    """(start row, compute?) of the batches this process goes through, in order: all of them, computed,
    without a shard; with one, the batches before its block replayed (False), then its block (True)."""
    starts = list(range(0, n_points, batch_size))
    if shard is None:
        return [(s, True) for s in starts]
    mine = shard.block(len(starts))
    if not mine:  # fewer batches than ranks: this one has none
        return []
    return [(s, i in mine) for i, s in enumerate(starts[: mine.stop])]


def gathered(parts: list[Tensor], shard: Shard | None, like: Tensor) -> Tensor:
    """This process's per-point parts as one float64 CPU tensor; with a shard, every rank's, in order."""
    local = torch.cat([p.detach().to("cpu", torch.float64) for p in parts]) if parts else \
        like.new_zeros(0).to("cpu", torch.float64)
    return local if shard is None else shard.gather(local)
