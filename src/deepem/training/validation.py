"""The validation hook. The trainer does not know how a model is validated: it calls a function
injected by whoever builds it (workflows/assembly.py passes an importance-weighted bound on the
validation split), at the end of every `valid_every`-th epoch and of the last one.

A validator must not move the training RNG (exact resume): draw from a generator of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import nn


class ValidationEstimate(Protocol):
    """What a validator returns (evaluation's LogLikelihoodEstimate has this shape)."""

    mean: float
    stderr: float
    estimator: str


Validator = Callable[[nn.Module], ValidationEstimate]


def validation_due(epochs_done: int, valid_every: int, epochs: int) -> bool:
    """Validate after every `valid_every`-th epoch and after the last (never when valid_every = 0)."""
    return bool(valid_every) and (epochs_done % valid_every == 0 or epochs_done == epochs)
