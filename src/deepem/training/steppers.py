"""Steppers: what the training loop (loop.py) drives each batch. A stepper fetches its runs' batches,
takes the step, and keeps the step's values in its runs' metrics windows; the loop decides everything
else. `SingleStepper` is one model (the trainer's guarded TrainStep, step.py), also as one rank of a
data-parallel job; vectorised.py's `SeedStepper` is S seeds of one run over stacked parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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
    was) and in which run (`run`, an index into the loop's runs). With a problem nothing was recorded."""

    points: int
    problem: str = ""
    run: int = 0


class Stepper(Protocol):
    label: str  # the progress bar's description ('' for none)

    def start_epoch(self, epoch: int) -> None:
        """Prepare the epoch's data order (and whatever else changes per epoch)."""

    def step(self, batch: int) -> StepReport:
        """Take the step of batch `batch` of the epoch; its values go to the runs' metrics windows."""

    def flush(self) -> None:
        """Move any values still held by the stepper into the runs' windows (before a record or a save)."""

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


class SingleStepper:
    """One model's guarded step on its run's batches (on this rank's shard in a data-parallel job).
    The run's `step` is looked up at every batch, so a test may wrap it."""

    label = ""

    def __init__(self, run: SingleRun) -> None:
        self.run = run
        self.order: Tensor | None = None
        self.data: Tensor | None = None

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
        result = r.step(x, mask).settled()  # (a device decision's flag is read here, once)
        if r.parallel is not None:
            r.parallel.average_buffers(r.method)
        if result.problem:
            return StepReport(points, result.problem)
        add_step(r.state, result.output)
        return StepReport(points)

    def flush(self) -> None:
        """(values go straight into the run's window, as 0-dim tensors)"""

    def export(self, run: int) -> None:
        """(the run's own objects are the ones stepped)"""
