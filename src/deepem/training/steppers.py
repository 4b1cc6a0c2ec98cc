"""Steppers: what the training loop (loop.py) drives each batch. A stepper fetches its runs' batches,
takes the step, and keeps the step's values in its runs' metrics windows; the loop decides everything
else. `SingleStepper` is one model (the trainer's guarded TrainStep, step.py), also as one rank of a
data-parallel job; vectorised.py's `SeedStepper` is S seeds of one run over stacked parameters.

When the step decides on the device (training/devices.py), `SingleStepper` reads no flag per step: a
non-finite step has already been skipped on the device, so the stepper keeps each step's result and
reads the flags of all of them at once when the loop reaches a record point (`settle`: a metrics record,
a validation, a checkpoint, a stop, the end). The loop then applies the non-finite policy to each step
that failed, in order, naming that step. On the host decision (CPU's) every step is settled at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from deepem.methods.base import Method
from deepem.training.config import TrainConfig
from deepem.training.data_order import batch_indices, epoch_data
from deepem.training.distributed import Parallel, shard_batch
from deepem.training.metrics import add_step
from deepem.training.state import TrainState
from deepem.training.step import StepResult


@dataclass(slots=True)
class StepReport:
    """A step's data points (per run) and, when it was not finite, what was not (`problem`, '' if all
    was) and in which run (`run`, an index into the loop's runs). With a problem nothing was recorded.
    `pending`: not known yet (a deferred step, settled at the next record point). `at`: (step, epoch,
    batch) of a step settled later than it was taken (None: the step just taken)."""

    points: int
    problem: str = ""
    run: int = 0
    pending: bool = False
    at: tuple[int, int, int] | None = None


class Stepper(Protocol):
    label: str  # the progress bar's description ('' for none)

    def start_epoch(self, epoch: int) -> None:
        """Prepare the epoch's data order (and whatever else changes per epoch)."""

    def step(self, batch: int) -> StepReport:
        """Take the step of batch `batch` of the epoch; its values go to the runs' metrics windows."""

    def flush(self) -> None:
        """Move any values still held by the stepper into the runs' windows (before a record or a save)."""

    def settle(self) -> list[StepReport]:
        """The reports of the steps taken since the last call whose outcome was still pending (in step
        order, each with its `at`; good steps' values go to the windows here); [] when none was."""

    def export(self, run: int) -> None:
        """Bring run `run`'s own objects (model, optimisers, global RNG) up to the stepper's state,
        before the loop validates or checkpoints it."""


class SingleRun(Protocol):
    """What SingleStepper reads of its run (training/trainer.py's Trainer)."""

    config: TrainConfig
    state: TrainState
    method: Method
    train_data: Tensor
    train_mask: Tensor | None
    dynamic_binarization: bool
    batch_hook: Callable[[int, Tensor], Tensor] | None
    parallel: Parallel | None
    step: Callable[[Tensor, Tensor | None], StepResult]
    #: the step as a CUDA graph (training/cuda_graph.py), taken instead of `step` when set
    graphed: Callable[[Tensor, Tensor | None], StepResult] | None


class SingleStepper:
    """One model's guarded step on its run's batches (on this rank's shard in a data-parallel job).
    The run's `step` is looked up at every batch, so a test may wrap it. Whether the steps' outcomes are
    settled at once or at the record points (the device decision) is chosen here, once."""

    label = ""

    def __init__(self, run: SingleRun) -> None:
        self.run = run
        self.order: Tensor | None = None
        self.data: Tensor | None = None
        self.deferred = getattr(run.step, "decision", "host") == "device" and run.parallel is None
        if self.deferred:
            run.step.keep_evidence = True  # (its diagnosis is asked after later steps)
        #: deferred steps not settled yet: ((step, epoch, batch), result)
        self.pending: list[tuple[tuple[int, int, int], StepResult]] = []

    def start_epoch(self, epoch: int) -> None:
        r = self.run
        self.order, self.data = epoch_data(r.train_data, r.config.seed, epoch, r.dynamic_binarization, r.train_mask)

    def step(self, batch: int) -> StepReport:
        r, cfg = self.run, self.run.config
        idx = batch_indices(self.order, batch, cfg.batch_size)
        x = self.data[idx].to(cfg.device, cfg.torch_dtype)
        mask = None if r.train_mask is None else r.train_mask[idx].to(cfg.device)
        if r.batch_hook is not None:
            x = r.batch_hook(r.state.step, x)
        points = x.shape[0]
        if r.parallel is not None:  # this rank's shard of the global batch
            x, mask = shard_batch(r.parallel, x, mask)
        graphed = getattr(r, "graphed", None)
        result = (r.step if graphed is None else graphed)(x, mask)
        if self.deferred:
            self.pending.append(((r.state.step, r.state.epoch, r.state.batch), result))
            return StepReport(points, pending=True)
        result = result.settled()
        if r.parallel is not None:
            r.parallel.average_buffers(r.method)
        if result.problem:
            return StepReport(points, result.problem)
        add_step(r.state, result.output)
        return StepReport(points)

    def settle(self) -> list[StepReport]:
        """One read of every pending step's flag (one synchronisation), then each flagged step's diagnosis
        from the evidence it kept."""
        if not self.pending:
            return []
        pending, self.pending = self.pending, []
        flags = torch.stack([result.nonfinite for _, result in pending]).tolist()
        reports = []
        for (at, result), flag in zip(pending, flags, strict=True):
            settled = result.settled() if flag else StepResult(result.output)
            if not settled.problem:
                add_step(self.run.state, settled.output)
            reports.append(StepReport(0, settled.problem, at=at))
        return reports

    def flush(self) -> None:
        """(values go straight into the run's window, as 0-dim tensors)"""

    def export(self, run: int) -> None:
        """(the run's own objects are the ones stepped)"""
