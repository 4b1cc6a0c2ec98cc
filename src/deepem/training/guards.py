"""Checks that keep non-finite values away from the parameters and out of checkpoints.

Each check returns a description of the first offending tensor ('' when all are finite), so the
trainer can name it in a warning or in a NonFiniteError together with the method and the batch."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

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


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """True when every entry of every tensor is finite, with one device synchronisation.

    On CPU and CUDA one call (`_amp_foreach_non_finite_check_and_unscale_`, the gradient scaler's check,
    with a scale of exactly 1, so it writes every value back unchanged) covers all the tensors, instead of
    a reduction per tensor, a stack and a test (about 120 ATen calls for the 12 gradients of an MLP
    model). Elsewhere, or for tensors it does not take, a sum per tensor: a sum is NaN or inf whenever an
    entry is, so False may also mean a finite sum overflowed (the callers then run exact checks)."""
    tensors = [t for t in tensors if t.numel()]
    if not tensors:
        return True
    flags = _found_flags(tensors)
    if flags is not None:
        found, one = flags
        torch._amp_foreach_non_finite_check_and_unscale_(tensors, found.zero_(), one)
        return not bool(found)
    return bool(torch.stack([t.sum() for t in tensors]).isfinite().all())


#: device -> (found flag, a scale of exactly one), reused by every check on that device
_FLAGS: dict[torch.device, tuple[Tensor, Tensor]] = {}
_CHECKED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _found_flags(tensors: Sequence[Tensor]) -> tuple[Tensor, Tensor] | None:
    device = tensors[0].device
    if device.type not in ("cpu", "cuda") or any(
            t.device != device or t.dtype not in _CHECKED_DTYPES or t.layout != torch.strided for t in tensors):
        return None
    if device not in _FLAGS:
        _FLAGS[device] = (torch.zeros((), device=device), torch.ones((), device=device))
    return _FLAGS[device]


def non_finite_input(x: Tensor, mask: Tensor | None = None) -> str:
    """A description of a non-finite data batch (its observed entries when a mask is given), or ''.

    The common finite case costs one sum and one synchronisation; only a sum that is not finite (a
    non-finite entry, or finite entries overflowing) runs the exact check."""
    observed = x if mask is None else x.masked_fill(~mask, 0)
    if not x.is_floating_point() or math.isfinite(float(observed.sum())):
        return ""
    x = x if mask is None else x[mask]
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

    The common all-finite case costs one check over all gradients and one device synchronisation
    (`all_finite`; a reduction per gradient measured 0.08 ms for the 425k gradients of the 784-200-200-50
    model, against 1.1 ms for isfinite().all() per gradient, which writes a bool tensor each)."""
    grads = [p.grad for params in groups.values() for p in params if p.grad is not None]
    if all_finite(grads):
        return ""
    for group, params in groups.items():
        for i, p in enumerate(params):
            if p.grad is not None and not torch.isfinite(p.grad).all():
                label = names.get(id(p), f"#{i}") if names else f"#{i}"
                return (f"gradient of parameter {label} (shape {tuple(p.shape)}, group {group!r}; "
                        f"{_count(p.grad)})")
    return ""


def losses_and_grads_finite(out: MethodOutput, groups: Mapping[str, Iterable[nn.Parameter]]) -> bool:
    """True when every loss, the log-weights and every gradient are finite, with a single device
    synchronisation (`all_finite`). Losses and log-weights enter as sums (fresh tensors, so the check
    never writes into the graph's own; a loss shared by several groups counts once): False can also
    mean a finite sum overflowed, and the caller then runs the exact checks above."""
    unique = list({id(loss): loss for loss in out.losses.values()}.values())
    if out.log_w is not None:
        unique.append(out.log_w)
    sums = [t.detach().sum() for t in unique]
    return all_finite(sums + [p.grad for params in groups.values() for p in params if p.grad is not None])


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
