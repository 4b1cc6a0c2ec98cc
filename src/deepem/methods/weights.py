"""Self-normalised importance weights fit to serve as gradient coefficients."""

from __future__ import annotations

import torch
from torch import Tensor

from deepem.inference.numerics import normalized_weights


def coefficient_weights(log_w: Tensor) -> Tensor:
    """Detached self-normalised weights softmax(log_w) over particles, for use as gradient coefficients,
    with weights below eps^2 of the dtype set to exactly zero.

    Why: with a poor proposal most weights are astronomically small, e.g. 1e-40, in float32's denormal
    range, and CPU matmuls on denormal operands run several times slower (docs/speed.md, "Thresholds
    in the code"). Dropping them changes a gradient by less than K * eps^2 relative to the
    largest weight (>= 1/K): far below rounding."""
    w = normalized_weights(log_w.detach())
    return torch.where(w < torch.finfo(w.dtype).eps ** 2, torch.zeros_like(w), w)
