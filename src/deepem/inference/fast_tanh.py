"""tanh as 2σ(2x) − 1 (`fast_tanh`): a faster form of an activation every training step runs, with the
same values to float rounding. (The fused Bernoulli output layer lives with its likelihood:
`models.bernoulli_head`.)"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from deepem.inference.constants import constant

#: below this many entries fast_tanh is torch.tanh
FAST_TANH_MIN_NUMEL = 65536


def fast_tanh(x: Tensor) -> Tensor:
    """tanh(x), computed as 2σ(2x) − 1 on CPU (`cpu_tanh`), torch.tanh elsewhere: for a caller that does
    not know its device in advance. A network's activation knows it and chooses once (`tanh_kernel`)."""
    return cpu_tanh(x) if x.device.type == "cpu" else torch.tanh(x)


def tanh_kernel(device: torch.device) -> Callable[[Tensor], Tensor]:
    """The tanh for tensors on `device`, chosen once (when a network is built or moved), not at every call:
    `cpu_tanh` on CPU; torch.tanh on every other device (on CUDA tanh is not slow)."""
    return cpu_tanh if torch.device(device).type == "cpu" else torch.tanh


def cpu_tanh(x: Tensor) -> Tensor:
    """tanh(x) of a CPU tensor, computed as 2σ(2x) − 1, with tanh's own backward (1 − y²)·grad.

    Why: PyTorch's CPU tanh costs several times its sigmoid (measured by benchmarks/profile_step.py; the
    figures are on docs/speed.md), and the decoder's two tanh layers run on every particle. Accuracy: the
    identity is exact; in floating point the result differs from tanh by at most a few ulps of 1
    (absolute, about 1e-7 in float32), which is the rounding of the activations that the next linear
    layer sees anyway. Under torch.func transforms (vectorised seeds) and on small tensors, where the
    extra Python-level autograd node costs more than it saves (below FAST_TANH_MIN_NUMEL; the
    measurement: docs/speed.md, "Thresholds in the code"), it is torch.tanh. The caller has chosen the
    device (`tanh_kernel`): nothing here looks at it."""
    if x.numel() < FAST_TANH_MIN_NUMEL or torch._C._are_functorch_transforms_active():
        return torch.tanh(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return _TanhViaSigmoid.apply(x)
    return _tanh_via_sigmoid(x)


def _tanh_via_sigmoid(x: Tensor) -> Tensor:
    # 2x as x + x and 2s as s + s (exact), 1 a cached tensor: no number wrapped per call (inference/constants.py)
    s = torch.add(x, x).sigmoid_()
    return s.add_(s).sub_(constant(1, s))


class _TanhViaSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = _tanh_via_sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)
