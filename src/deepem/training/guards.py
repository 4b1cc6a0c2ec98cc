"""Checks that keep non-finite values away from the parameters and out of checkpoints.

Each check returns a description of the first offending tensor ('' when all are finite), so the
trainer can name it in a warning or in a NonFiniteError together with the method and the batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from deepem.errors import UserError
from deepem.methods.base import MethodOutput


class NonFiniteError(UserError, FloatingPointError, RuntimeError):
    """A NaN or inf in a loss, a gradient, a log-weight or the parameters; the message says which and where."""


def _count(t: Tensor) -> str:
    bad = int((~torch.isfinite(t)).sum())
    nan = int(torch.isnan(t).sum())
    return f"{bad} of {t.numel()} non-finite: {nan} NaN, {bad - nan} inf"


def non_finite_input(x: Tensor) -> str:
    """A description of a non-finite data batch, or ''."""
    if torch.isfinite(x).all():
        return ""
    rows = (~torch.isfinite(x)).any(-1).nonzero().flatten()[:5].tolist() if x.dim() > 1 else []
    return f"input batch ({_count(x)}; rows {rows} of the batch)"


def non_finite_losses(out: MethodOutput) -> str:
    """A description of the first non-finite loss or log-weight, or '' if all are finite."""
    for name, loss in out.losses.items():
        if not torch.isfinite(loss).all():
            return f"loss {name!r} (value {loss.detach().flatten()[:1].item()})"
    if out.log_w is not None and not torch.isfinite(out.log_w).all():
        return f"log-weights ({_count(out.log_w.detach())})"
    return ""


def parameter_names(*modules: nn.Module) -> dict[int, str]:
    """id(parameter) -> its qualified name in the first module holding it, for diagnoses."""
    names: dict[int, str] = {}
    for module in modules:
        for name, p in module.named_parameters():
            names.setdefault(id(p), name)
    return names


def first_non_finite_grad(groups: Mapping[str, Iterable[nn.Parameter]],
                          names: Mapping[int, str] | None = None) -> str:
    """A description of the first parameter with a non-finite gradient, or ''.

    The common all-finite case costs one reduction per gradient and one device synchronisation: a sum
    is NaN or inf whenever an entry is, and it writes nothing, where isfinite().all() writes a bool tensor
    per gradient (an order of magnitude slower: docs/speed.md, "Thresholds in the code"). A sum that
    overflows with finite entries only sends the check down the exact per-parameter path below."""
    grads = [p.grad for params in groups.values() for p in params if p.grad is not None]
    if not grads or bool(torch.stack([g.sum() for g in grads]).isfinite().all()):
        return ""
    for group, params in groups.items():
        for i, p in enumerate(params):
            if p.grad is not None and not torch.isfinite(p.grad).all():
                label = names.get(id(p), f"#{i}") if names else f"#{i}"
                return (f"gradient of parameter {label} (shape {tuple(p.shape)}, group {group!r}; "
                        f"{_count(p.grad)})")
    return ""


def losses_and_grads_finite(out: MethodOutput, groups: Mapping[str, Iterable[nn.Parameter]]) -> bool:
    """True when every loss, the log-weights and every gradient are finite, at the cost of one
    reduction per tensor and a single device synchronisation (a sum is NaN or inf whenever an entry
    is). False can also mean a finite sum overflowed: the caller then runs the exact checks above."""
    sums = [loss.detach().sum() for loss in out.losses.values()]
    if out.log_w is not None:
        sums.append(out.log_w.detach().sum())
    sums += [p.grad.sum() for params in groups.values() for p in params if p.grad is not None]
    return not sums or bool(torch.stack(sums).isfinite().all())


def first_non_finite_tensor(tree: object, prefix: str = "") -> str:
    """The path of the first non-finite floating tensor in nested dicts/lists of tensors, or ''.
    Used on a checkpoint's state before it is written."""
    if isinstance(tree, Tensor):
        if tree.is_floating_point() and not torch.isfinite(tree).all():
            return f"{prefix} ({_count(tree)})"
        return ""
    if isinstance(tree, Mapping):
        items: Iterable = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return ""
    for key, value in items:
        found = first_non_finite_tensor(value, f"{prefix}.{key}" if prefix else str(key))
        if found:
            return found
    return ""
