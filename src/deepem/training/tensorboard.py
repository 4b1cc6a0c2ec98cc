"""TensorBoard event files of a run (`tensorboard = True`, `deepem train --tensorboard`): RUN/tensorboard/.

A `TensorBoardLogger` is the trainer's metrics logger (training/metrics.py's MetricsLogger): it gets each
record as metrics.jsonl does, plus the learning rates and skipped steps, and after each validation the
model, from which a `Watcher` given by whoever built the run (workflows/watch.py) draws images and
further validation numbers (KL to the prior, active units). Drawing lives above this layer; here are the
tags, the steps and the files.

Resumed curves. A writer opened after a resume or a rollback from the checkpoint at step c passes
`purge_step = c + 1`: TensorBoard's readers then drop every point at step > c written before (the steps
the run computes again), so a curve is never doubled or rewound. Events are flushed with each checkpoint
and validation, so what the checkpoint covers is on disk when it is."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepem.errors import UserError
from deepem.training.rng import capture_rng_state, restore_rng_state

FOLDER = "tensorboard"
#: seconds between the writer's own flushes (besides those at checkpoints and validations)
FLUSH_SECONDS = 10
#: record fields that are not curves
NOT_CURVES = frozenset({"kind", "step", "epoch", "estimator"})


class TensorBoardMissing(UserError, ImportError):
    """`tensorboard = True` without the tensorboard package installed."""


def require_tensorboard() -> None:
    """TensorBoardMissing, saying what to install, unless the tensorboard package can be imported."""
    if importlib.util.find_spec("tensorboard") is None:
        raise TensorBoardMissing("--tensorboard needs the tensorboard package, which is not installed; install it "
                                 "with: pip install 'deepem[tensorboard]' (or pip install tensorboard)")


@dataclass
class Watched:
    """What a Watcher draws from the model after a validation: numbers (name -> value) and images (name ->
    RGB pixels (H, W, 3), uint8), each one curve or one image tag."""

    scalars: dict[str, float] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)


#: called with the model (in eval mode, without gradients) after each validation; must draw from
#: generators of its own (the logger puts the global ones back anyway, so the run stays exact)
Watcher = Callable[[nn.Module], Watched]


def tag_of(kind: str, name: str) -> str:
    """The TensorBoard tag of a record field: loss/GROUP, lr/GROUP, train/NAME, valid/NAME."""
    if name.startswith("loss_"):
        return f"loss/{name.removeprefix('loss_')}"
    if name.startswith("lr_"):
        return f"lr/{name.removeprefix('lr_')}"
    if kind == "valid":
        return f"valid/{name.removeprefix('valid_')}"
    return f"train/{name}"


class TensorBoardLogger:
    """Scalars and images of one run in `folder` (RUN/tensorboard); `watch` draws the validation images."""

    def __init__(self, folder: Path, watch: Watcher | None = None) -> None:
        require_tensorboard()
        self.folder = Path(folder)
        self.watch = watch
        self._writer: Any = None
        self._purge_step: int | None = None

    def restart(self, step: int) -> None:
        """The run goes on from its state at `step` (resumed or rolled back): points after it that an
        earlier writer logged are superseded by those logged from now on."""
        self.close()
        self._purge_step = step + 1

    def _open(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

            self._writer = SummaryWriter(str(self.folder), purge_step=self._purge_step, flush_secs=FLUSH_SECONDS)
            self._purge_step = None  # purged once: a later writer of the same process continues its curves
        return self._writer

    def write(self, record: dict[str, Any]) -> None:
        """One record as metrics.jsonl has it (kind "train" or "valid"; others are not curves), each
        number at the record's step."""
        kind = record.get("kind")
        if kind not in ("train", "valid"):
            return
        writer, step = self._open(), int(record["step"])
        for name, value in record.items():
            if name in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                writer.add_scalar(tag_of(kind, name), value, step)

    def validated(self, step: int, model: nn.Module) -> None:
        """After the validation at `step`: the watcher's numbers and images, then a flush (the images
        and the validation point are what a watcher of the run waits for)."""
        writer = self._open()
        if self.watch is not None:
            was_training = model.training
            rng = capture_rng_state()  # drawing must not move the training's generators (exact resume)
            try:
                model.eval()
                with torch.no_grad():
                    watched = self.watch(model)
            finally:
                restore_rng_state(rng)
                model.train(was_training)
            for name, value in watched.scalars.items():
                if math.isfinite(value):
                    writer.add_scalar(f"valid/{name}", value, step)
            for name, image in watched.images.items():
                writer.add_image(f"images/{name}", image, step, dataformats="HWC")
        writer.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
