"""Training metrics: a window of per-step values written to metrics.jsonl as one averaged record every
LOG_EVERY_STEPS steps (and at the end of every epoch), and to the run's metrics logger if it has one
(`MetricsLogger`: TensorBoard, training/tensorboard.py), which the loop never sees.

Values stay 0-dim detached tensors until the record is written, so a step costs no device
synchronisation per value; methods may return diagnostics as floats or as such tensors."""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor, nn

from deepem.methods.base import MethodOutput
from deepem.training.state import TrainState

LOG_EVERY_STEPS = 50


class MetricsLogger(Protocol):
    """Where a run's records go besides metrics.jsonl (the Trainer calls it; rank 0 only)."""

    def write(self, record: dict[str, Any]) -> None:
        """A record as metrics.jsonl gets it, a train record with `logged_extras` added."""

    def validated(self, step: int, model: nn.Module) -> None:
        """After the validation at `step` (its record already written): what the model shows now."""

    def restart(self, step: int) -> None:
        """The run goes on from its state at `step` (resumed, rolled back): later points logged before are void."""

    def flush(self) -> None:
        """Everything written so far to disk (at each checkpoint)."""

    def close(self) -> None: ...


def logged_extras(learning_rates: dict[str, float], skipped_steps: int) -> dict[str, Any]:
    """What a logger's train record adds to metrics.jsonl's: each group's learning rate in effect
    (lr_GROUP) and the steps skipped so far."""
    return {**{f"lr_{g}": lr for g, lr in learning_rates.items()}, "skipped_steps": skipped_steps}


def add_step(state: TrainState, out: MethodOutput) -> None:
    """Append a step's losses and diagnostics to the window (no conversion to float here)."""
    values = {**{f"loss_{g}": t.detach() for g, t in out.losses.items()}, **out.diagnostics}
    for k, v in values.items():
        state.window.setdefault(k, []).append(v.detach() if isinstance(v, Tensor) else v)


def window_floats(window: dict[str, list[Any]]) -> dict[str, list[float]]:
    """The window as plain floats: what a record averages and what a checkpoint stores."""
    return {k: [float(v) for v in vs] for k, vs in window.items()}


def window_record(state: TrainState, points_per_sec: float) -> dict[str, Any]:
    """The averaged record of the window (the float of each value, then their mean)."""
    record: dict[str, Any] = {k: sum(v) / len(v) for k, v in window_floats(state.window).items()}
    record.update(kind="train", step=state.step, epoch=state.epoch, points_per_sec=points_per_sec)
    return record

