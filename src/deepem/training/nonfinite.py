"""The non-finite policy's decisions (`nan_policy`): stop with a diagnosis, skip the step (a bounded
number of times in a row), or roll back to the last good checkpoint with half the learning rate (a
bounded number of times). The checks themselves are guards.py's; restoring a checkpoint is the loop's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepem.training.config import TrainConfig
from deepem.training.guards import NonFiniteError
from deepem.training.state import TrainState, resume_command

ROLLBACK_LR_FACTOR = 0.5


def skip(state: TrainState, config: TrainConfig, what: str, where: str) -> dict[str, Any]:
    """Count a skipped step; NonFiniteError once more than max_consecutive_skips come in a row.
    Returns the metrics record of the skip."""
    state.skipped_steps += 1
    state.consecutive_skips += 1
    if state.consecutive_skips > config.max_consecutive_skips:
        raise NonFiniteError(
            f"non-finite {what} at {where}: {state.consecutive_skips} steps in a row were non-finite "
            f"(max_consecutive_skips = {config.max_consecutive_skips}); giving up. Lower --lr or check the data"
        )
    return {"kind": "nonfinite", "action": "skip", "what": what, "step": state.step, "epoch": state.epoch,
            "batch": state.batch}


def stop(what: str, where: str, run_root: Path) -> NonFiniteError:
    """The error of the stop policy, saying what to do next."""
    return NonFiniteError(
        f"non-finite {what} at {where}. Nothing was applied to the parameters and the last good "
        f"checkpoint is kept. Lower --lr, use a larger --adam-eps, or continue past such steps with "
        f"{resume_command(run_root)} --nan-policy skip|rollback"
    )


def check_rollback_budget(state: TrainState, config: TrainConfig, diagnosis: str) -> None:
    if state.rollbacks >= config.max_rollbacks:
        raise NonFiniteError(
            f"{diagnosis}; gave up after {state.rollbacks} rollbacks (max_rollbacks = {config.max_rollbacks}, "
            f"learning-rate scale now {state.lr_scale:g}). Lower --lr or check the data"
        )


def carry_over(restored: TrainState, before: TrainState) -> None:
    """What a rollback decided outlives the state it restores, or the next rollback would repeat it:
    the rollback count, the halved learning-rate scale and the skipped-step count."""
    restored.rollbacks = before.rollbacks + 1
    restored.lr_scale = before.lr_scale * ROLLBACK_LR_FACTOR
    restored.skipped_steps = max(restored.skipped_steps, before.skipped_steps)
