"""Early stopping (`patience`): the loop reports each validation bound; this object keeps the best one
and a copy of the parameters that reached it, and says when `patience` validations in a row brought no
new best. Its counters (best_valid, best_epoch, stale_validations) live in the TrainState and the best
copy in the checkpoint's "best" entry (what evaluation loads, workflows/loading.py), so a resumed run
stops where the uninterrupted one would."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from deepem.training.state import TrainState


class EarlyStopping:
    """patience: validations in a row without a new best after which the run stops (0: never; then
    the bound is still tracked, but no parameters are copied); tol: how much a validation must beat the
    best by to count as a new best (scikit-learn's tol: smaller gains count as no change)."""

    def __init__(self, patience: int = 0, tol: float = 0.0) -> None:
        self.patience = patience
        self.tol = tol  # a new best must beat the best by more than this
        #: copies of the model's and method's states at the best validation (with patience only)
        self.best: dict[str, Any] | None = None

    def observe(self, state: TrainState, bound: float, model: nn.Module, method: nn.Module) -> None:
        """Count the validation bound (higher is better) reached at step `state.step`."""
        if math.isfinite(bound) and bound > state.best_valid + self.tol:
            state.best_valid, state.best_epoch, state.stale_validations = bound, state.epoch, 0
            if self.patience:
                # "step": what a record of these parameters names (workflows/loading.py)
                self.best = {"model": _copy_state(model), "method": _copy_state(method), "step": state.step}
        else:
            state.stale_validations += 1

    def spent(self, state: TrainState) -> bool:
        """Whether the run should stop now."""
        return bool(self.patience) and state.stale_validations >= self.patience

    def restore_best(self, model: nn.Module, method: nn.Module) -> None:
        """Put the best validation's parameters back (nothing without patience)."""
        if self.best is not None:
            model.load_state_dict(self.best["model"])
            method.load_state_dict(self.best["method"])


def _copy_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
