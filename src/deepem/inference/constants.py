"""Cached 0-dim tensors for the Python numbers of per-step arithmetic.

Why: `t * 2` or `t - math.log(k)` wraps the number in a fresh tensor and converts it to t's dtype, four
more ATen calls (to, _to_copy, empty_strided, copy_) for each such op, on every step; a 0-dim tensor of
t's dtype and device, made once, costs none. The values are the same: the wrapped number is rounded to
t's dtype before the arithmetic too (float32, float64; half types compute in float32, so those keep the
plain number)."""

from __future__ import annotations

import torch
from torch import Tensor

#: dtypes whose CPU and CUDA kernels compute with a Python number rounded to the dtype itself
_OWN_ARITHMETIC = (torch.float32, torch.float64)


def constant(value: float, like: Tensor) -> Tensor | float:
    """`value` as a cached 0-dim tensor of `like`'s dtype and device (`value` itself for other dtypes, under
    torch.compile, which folds numbers anyway, and while a CUDA graph is captured, which cannot copy a new
    one to the device). Read-only: never modify the tensor returned."""
    if like.dtype not in _OWN_ARITHMETIC or torch.compiler.is_compiling():
        return value
    key = (float(value), like.dtype, like.device)
    cached = _CACHE.get(key)
    if cached is None:
        if like.is_cuda and torch.cuda.is_current_stream_capturing():
            return value
        if len(_CACHE) >= 1024:  # (values that change from call to call would otherwise pile up)
            _CACHE.clear()
        with torch.inference_mode(False), torch.no_grad():  # a normal tensor, even if first asked for in inference
            cached = _CACHE[key] = torch.tensor(key[0], dtype=like.dtype, device=like.device)
    return cached


#: (value, dtype, device) -> its 0-dim tensor; a step uses a handful
_CACHE: dict[tuple[float, torch.dtype, torch.device], Tensor] = {}
