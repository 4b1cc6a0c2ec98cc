"""The non-finite policy (`nan_policy`): what the loop does about a step or a checkpoint that is not
finite. The policy only decides; the loop acts (records a skip, restores a checkpoint, stops). Its
choices: stop with a diagnosis, skip the step (a bounded number of times in a row), or roll back to the
last good checkpoint with half the learning rate (a bounded number of times). The checks themselves
are guards.py's."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepem.training.config import TrainConfig
from deepem.training.state import TrainState, resume_command

ROLLBACK_LR_FACTOR = 0.5


class Action(enum.Enum):
    SKIP = "skip"  # count the step as taken, apply nothing
    ROLL_BACK = "rollback"  # restore the newest good checkpoint with half the learning rate
    STOP = "stop"  # raise NonFiniteError(message)


@dataclass(frozen=True)
class Decision:
    """What to do; `message` is the warning (skip, roll back) or the error (stop) to give the user;
    `record` the metrics record of a skip."""

    action: Action
    message: str
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NonFinitePolicy:
    policy: str = "stop"  # config.nan_policy
    max_consecutive_skips: int = 0
    max_rollbacks: int = 0

    @classmethod
    def from_config(cls, config: TrainConfig) -> NonFinitePolicy:
        return cls(config.nan_policy, config.max_consecutive_skips, config.max_rollbacks)

    def on_step(self, state: TrainState, what: str, where: str, runs: Sequence[Path],
                at: tuple[int, int, int] | None = None) -> Decision:
        """A step with a non-finite `what` at `where` of the run whose state is `state`; nothing of it
        was applied. `runs`: the folders trained together (one, but for vectorised seeds). `at`: the
        step's (step, epoch, batch) when it is decided after later steps (the device decision), else the
        state's own. A skip is counted in `state` here."""
        step, epoch, batch = at if at is not None else (state.step, state.epoch, state.batch)
        if self.policy == "skip":
            state.skipped_steps += 1
            state.consecutive_skips += 1
            if state.consecutive_skips > self.max_consecutive_skips:
                return Decision(Action.STOP, (
                    f"non-finite {what} at {where}: {state.consecutive_skips} steps in a row were non-finite "
                    f"(max_consecutive_skips = {self.max_consecutive_skips}); giving up. Lower --lr or check the data"))
            record = {"kind": "nonfinite", "action": "skip", "what": what, "step": step,
                      "epoch": epoch, "batch": batch}
            return Decision(Action.SKIP, f"warning: non-finite {what} at {where}; step skipped "
                                         f"({state.skipped_steps} so far)", record)
        if self.policy == "rollback":
            return self._roll_back(state, f"non-finite {what} at {where}")
        if len(runs) > 1:
            others = "; ".join(resume_command(r) for r in runs)
            return Decision(Action.STOP, (
                f"non-finite {what} at {where}; nothing was applied and every seed's last good checkpoint is kept. "
                f"Vectorised seeds stop on a non-finite step: continue each seed alone ({others}), e.g. with "
                "--nan-policy skip"))
        return Decision(Action.STOP, (
            f"non-finite {what} at {where}. Nothing was applied to the parameters and the last good "
            f"checkpoint is kept. Lower --lr, use a larger --adam-eps, or continue past such steps with "
            f"{resume_command(runs[0])} --nan-policy skip|rollback"))

    def on_checkpoint(self, state: TrainState, diagnosis: str) -> Decision:
        """A checkpoint was refused because some of the state is not finite (`diagnosis` says what)."""
        if self.policy == "rollback":
            return self._roll_back(state, diagnosis)
        return Decision(Action.STOP, diagnosis)

    def _roll_back(self, state: TrainState, diagnosis: str) -> Decision:
        if state.rollbacks >= self.max_rollbacks:
            return Decision(Action.STOP, (
                f"{diagnosis}; gave up after {state.rollbacks} rollbacks (max_rollbacks = {self.max_rollbacks}, "
                f"learning-rate scale now {state.lr_scale:g}). Lower --lr or check the data"))
        return Decision(Action.ROLL_BACK, diagnosis)


def carry_over(restored: TrainState, before: TrainState) -> None:
    """What a rollback decided outlives the state it restores, or the next rollback would repeat it:
    the rollback count, the halved learning-rate scale and the skipped-step count."""
    restored.rollbacks = before.rollbacks + 1
    restored.lr_scale = before.lr_scale * ROLLBACK_LR_FACTOR
    restored.skipped_steps = max(restored.skipped_steps, before.skipped_steps)
