"""Data-parallel training and sharded evaluation on torch.distributed: the process group, per-rank
random streams, gradient averaging and the gathering of per-point results.

A process learns that it is one rank of a job from the environment a launcher sets (WORLD_SIZE, RANK,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT: `torchrun`, or `deepem ... --nproc N`, which uses the same
launcher). Without WORLD_SIZE > 1 nothing here is used and single-process runs are untouched.

Training (the relation to a single process). The global batch of B points is cut into N contiguous
shards by `torch.tensor_split` (sizes differ by at most one); rank r computes its method on shard r,
drawing particles from its own stream (the global torch generator seeded by `rank_seed(seed, r)` once
the model and method are built, identically on every rank). Each rank scales its gradients by
b_r / B (its share of the points) and the scaled gradients are summed over ranks (all_reduce): for
methods whose losses are means over points, this is exactly the gradient of the global batch's mean
loss. A single process that computes the same shards in turn, shard r under stream r, and sums the
scaled gradients takes the same steps (tests/training/test_distributed.py checks it). Ragged batches
(the last of an epoch) are weighted the same way, so any batch size works as long as every batch has at
least N points. Method state that depends on the batch (NVIL's learning-signal moments, AIWAE's
adapted step sizes) is averaged over ranks after every step, which keeps ranks identical; for such
methods the 2-rank run is a data-parallel approximation of the 1-process run, not equal to it."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from deepem.errors import InvalidInputError
from deepem.training.checkpoint_file import CheckpointError
from deepem.training.config import ConfigError
from deepem.training.rng import capture_rng_state, restore_rng_state

#: seconds a collective waits for the other ranks before the job fails (a rank that died without
#: its launcher noticing); the launcher usually ends the job sooner.
TIMEOUT_S = 300


def env_world_size() -> int:
    """The number of ranks the launcher started (1 outside a launched job)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True inside a job started by torchrun or `deepem ... --nproc N` with N > 1."""
    return env_world_size() > 1


def backend_for(device: str) -> str:
    """NCCL for CUDA tensors, gloo for CPU ones."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s particle stream: distinct for each (seed, rank), within 63 bits."""
    return (seed * 1_000_003 + 7_919 * (rank + 1)) % (2**63 - 1)


class Parallel:
    """This process's place in a data-parallel job, and the collectives the trainer and the
    evaluation workflows use. Build it with `Parallel.from_env()` inside a launched job."""

    def __init__(self, rank: int, world: int, device: str = "cpu") -> None:
        self.rank, self.world, self.device = rank, world, device
        self.weight = 1.0 / world  # this rank's share of the current batch (set per batch by the trainer)

    @classmethod
    def from_env(cls, device: str = "cpu") -> Parallel:
        """Join the job the environment describes (initialising the default process group once)."""
        if not dist.is_initialized():
            backend = backend_for(device)
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def is_writer(self) -> bool:
        """Only rank 0 writes the run folder."""
        return self.rank == 0

    @property
    def _comm_device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo CPU ones.
        return torch.device("cuda", torch.cuda.current_device()) if backend_for(self.device) == "nccl" \
            else torch.device("cpu")

    # training ----------------------------------------------------------------------------------
    def shard(self, x: Tensor) -> slice:
        """This rank's contiguous share of a batch of x.shape[0] points (sets `weight` for it)."""
        n = x.shape[0]
        if n < self.world:
            raise ValueError(f"a batch of {n} points cannot be shared by {self.world} processes; every batch "
                             f"(the last of an epoch too) needs at least {self.world} points: choose a batch "
                             "size and training-set size accordingly")
        sizes = [len(part) for part in torch.tensor_split(torch.arange(n), self.world)]
        start = sum(sizes[: self.rank])
        self.weight = sizes[self.rank] / n
        return slice(start, start + sizes[self.rank])

    def any_rank(self, problem: str) -> str:
        """Agree on a problem: '' if no rank has one, else this rank's description (or a note that
        another rank found one), so that every rank skips or stops at the same step."""
        flag = torch.tensor([1.0 if problem else 0.0], device=self._comm_device)
        dist.all_reduce(flag)
        if not flag.item():
            return ""
        return problem or "a non-finite value on another rank"

    def grad_sync(self, params: Iterable[nn.Parameter], problem: str) -> str:
        """The TrainStep hook: after backward, before the optimiser steps. Agree on non-finite values;
        if there are none, replace each gradient by the batch-weighted sum over ranks."""
        problem = self.any_rank(problem)
        if problem:
            return problem
        with_grad = [p for p in params if p.grad is not None]
        if with_grad:
            flat = torch.cat([p.grad.reshape(-1) * self.weight for p in with_grad]).to(self._comm_device)
            dist.all_reduce(flat)
            offset = 0
            for p in with_grad:
                n = p.grad.numel()
                p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
                offset += n
        return ""

    def average_buffers(self, module: nn.Module) -> None:
        """Average the floating-point buffers of `module` (method state fitted to the local batch)."""
        for buf in module.buffers():
            if buf is not None and buf.is_floating_point():
                avg = buf.detach().to(self._comm_device, copy=True)
                dist.all_reduce(avg)
                buf.copy_(avg / self.world)

    # results -----------------------------------------------------------------------------------
    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def gather_cat(self, t: Tensor) -> Tensor:
        """Every rank's tensor concatenated in rank order (sizes may differ), on every rank, on CPU."""
        return torch.cat([p for p in self.gather_objects(t.detach().cpu())])

    def barrier(self) -> None:
        dist.barrier()


def seed_rank_stream(seed: int, parallel: Parallel | None) -> None:
    """Switch the global torch generator to this rank's particle stream (nothing for one process)."""
    if parallel is not None:
        torch.manual_seed(rank_seed(seed, parallel.rank))


def finish(parallel: Parallel | None) -> None:
    """Leave the process group (at the end of a launched command)."""
    if parallel is not None and dist.is_initialized():
        dist.destroy_process_group()


def default_threads(nproc: int, cores: int | None = None) -> int:
    """Torch threads per rank when N ranks share the machine: max(1, cores // N)."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, nproc))


# checkpoints of a parallel run -------------------------------------------------------------------
def distributed_state(parallel: Parallel) -> dict[str, Any]:
    """What a parallel run's checkpoint holds beyond a single process's: the number of ranks and every
    rank's RNG state (a collective: every rank calls it when a checkpoint is saved)."""
    return {"world_size": parallel.world, "rng_ranks": parallel.gather_objects(capture_rng_state())}


def check_world_size(ckpt: dict[str, Any], parallel: Parallel | None, run_dir: str | Path) -> None:
    """Refuse a checkpoint written by another number of processes: each rank's particle stream is in
    it, so only the same number of ranks continues the run exactly."""
    theirs = int(ckpt.get("world_size", 1))
    mine = 1 if parallel is None else parallel.world
    if theirs != mine:
        how = f"--nproc {theirs}" if theirs > 1 else "without --nproc"
        raise CheckpointError(f"the run in {run_dir} was trained by {theirs} process(es) and this job has {mine}; "
                              f"resume it {how} (deepem train --resume {run_dir} {how}) for an exact continuation")


def restore_rank_rng(ckpt: dict[str, Any], parallel: Parallel) -> None:
    """Put this rank's generators back where its own stream stood at the checkpoint."""
    restore_rng_state(ckpt["rng_ranks"][parallel.rank])


def shard_batch(parallel: Parallel, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """This rank's shard of a global batch (and of its mask)."""
    part = parallel.shard(x)
    return x[part], None if mask is None else mask[part]


def local_world_size() -> int:
    """Ranks on this machine (they share its cores)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def check_launched(nproc: int, command: str) -> None:
    """Inside a launched job, --nproc (when given) must agree with the launcher's number of ranks."""
    if nproc > 1 and nproc != local_world_size():
        raise InvalidInputError(f"--nproc {nproc} disagrees with the launcher's {local_world_size()} processes on this "
                                f"machine; under torchrun leave --nproc out of the deepem {command} command")


def is_rank_zero() -> bool:
    """True in a single process and in rank 0 of a launched job (the one that reports)."""
    return os.environ.get("RANK", "0") == "0"


def check_shardable(n_points: int, batch_size: int, world: int) -> None:
    """Every batch, the epoch's last (ragged) one too, must give each of the `world` ranks a point."""
    last = n_points % batch_size or batch_size
    smallest = min(batch_size, n_points, last)
    if smallest < world:
        raise ConfigError(f"invalid batch_size = {batch_size} for {world} processes and {n_points} training "
                          f"points: a batch of {smallest} cannot give each process a point; use a batch size "
                          f">= {world} whose last batch of an epoch (n mod batch size) is 0 or >= {world}")


#: exit code of a rank that stopped because a peer was gone (the launcher then names the peer if it can)
EXIT_LOST_PEER = 75


def lost_peer(err: BaseException) -> bool:
    """Whether `err` is a collective that failed because another rank is gone (its launcher reports it)."""
    text = str(err)
    return isinstance(err, dist.DistError) or "gloo" in text or "NCCL" in text or "Connection reset" in text
