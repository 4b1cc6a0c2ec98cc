"""Where a run stands: what a checkpoint must restore besides parameters, optimisers and RNGs, and
the exception that reports a graceful stop."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainState:
    epoch: int = 0  # the epoch in progress (or the next one, when batch == 0)
    batch: int = 0  # the next batch of that epoch
    step: int = 0  # batches processed in all, skipped ones included (checkpoints are named by it)
    lr_scale: float = 1.0  # halved by each rollback
    skipped_steps: int = 0
    consecutive_skips: int = 0
    rollbacks: int = 0
    elapsed: float = 0.0  # seconds of training before this process
    best_valid: float = -math.inf
    best_epoch: int = 0  # the epoch of best_valid (0: none yet)
    stale_validations: int = 0  # validations in a row without a new best (early stopping, config.patience)
    metrics_records: int = 0  # lines in metrics.jsonl written up to this state
    # train metrics not yet logged: 0-dim tensors while training (no device sync per step), floats
    # once logged or checkpointed (training/metrics.py)
    window: dict[str, list[Any]] = field(default_factory=dict)
    window_points: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def resume_command(run_dir: str | Path) -> str:
    """The shell command that continues the run in `run_dir`."""
    return f"deepem train --resume {shlex.quote(str(run_dir))}"


class TrainingInterrupted(Exception):
    """A stop signal was honoured: the step in progress finished and a checkpoint was written."""

    def __init__(self, signal_name: str, checkpoint: Path | None, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name
        self.checkpoint = checkpoint
