"""Checks that keep non-finite values away from the parameters."""

from __future__ import annotations

import torch
from torch import nn

from deepem.methods.base import MethodOutput


class NonFiniteError(FloatingPointError):
    """A NaN or inf in a loss, a gradient or a log-weight; the message says which and where."""


def non_finite_losses(out: MethodOutput) -> str:
    """A description of the first non-finite loss or log-weight, or '' if all are finite."""
    for name, loss in out.losses.items():
        if not torch.isfinite(loss).all():
            return f"loss {name!r} ({float(loss)})"
    if out.log_w is not None and not torch.isfinite(out.log_w).all():
        bad = (~torch.isfinite(out.log_w)).sum().item()
        return f"log-weights ({bad} of {out.log_w.numel()} non-finite)"
    return ""


def first_non_finite_grad(groups: dict[str, list[nn.Parameter]]) -> str:
    """A description of the first parameter with a non-finite gradient, or ''."""
    for group, params in groups.items():
        for i, p in enumerate(params):
            if p.grad is not None and not torch.isfinite(p.grad).all():
                return f"gradient of parameter {i} (shape {tuple(p.shape)}) in group {group!r}"
    return ""
