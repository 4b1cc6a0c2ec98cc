"""Multi-layer perceptrons. Linear layers act on the last dimension, so a network applied to
particles shaped (K, B, D) runs as one batched call."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from deepem.inference.fast_tanh import tanh_kernel

#: reduced floating types that autocast computes in (mixed precision: training/precision.py)
REDUCED_DTYPES = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class NetworkPrecision:
    """How the networks compute under mixed precision: products in `compute` (autocast), and with
    `float32_heads` the output layer of every MLP in float32."""

    compute: torch.dtype
    float32_heads: bool = False


_network_precision: ContextVar[NetworkPrecision | None] = ContextVar("network_precision", default=None)


@contextmanager
def networks_in(precision: NetworkPrecision | None) -> Iterator[None]:
    """Within: the networks (MLP, conv) run their products under autocast to `precision.compute`, and
    only they: sampling, moment matching, log-densities, log-weights and normalisers stay in float32.
    None: float32 throughout (the default)."""
    token = _network_precision.set(precision)
    try:
        yield
    finally:
        _network_precision.reset(token)


def network_region(like: Tensor) -> AbstractContextManager[object]:
    """The region a network's products run in: autocast on `like`'s device under `networks_in`, else nothing."""
    p = _network_precision.get()
    if p is None:
        return nullcontext()
    return torch.autocast(like.device.type, dtype=p.compute)


def heads_in_float32() -> bool:
    """Whether the networks' output layers stay in float32 (`networks_in` with float32_heads)."""
    p = _network_precision.get()
    return p is not None and p.float32_heads


def full_precision(t: Tensor) -> Tensor:
    """t in float32 where autocast left it in a reduced type (bfloat16, float16); otherwise t itself.

    Under mixed precision the networks' products run in the reduced type, but whatever a density,
    log-weight or normaliser is computed from must be float32: every network output passes here."""
    return t.float() if t.dtype in REDUCED_DTYPES else t


class Tanh(nn.Tanh):
    """nn.Tanh with the faster CPU kernel of `inference.fast_tanh` (same values to float rounding). The
    kernel is chosen for the module's device once, when it is built (the default device then) and when
    the network is moved (`.to`, `.cuda`, ...), never at a call: a call on CUDA never takes the CPU kernel,
    and no call looks at its input's device."""

    def __init__(self) -> None:
        super().__init__()
        self._choose(torch.empty(0).device)

    def _choose(self, device: torch.device) -> None:
        self._device = device
        self.kernel = tanh_kernel(device)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 (nn.Module's own signature)
        # the module holds no tensor: the device it moves to is where `fn` sends an empty one from its own
        moved = super()._apply(fn, recurse)
        self._choose(fn(torch.empty(0, device=self._device)).device)
        return moved

    def forward(self, x: Tensor) -> Tensor:
        return self.kernel(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}


class MLP(nn.Sequential):
    """An `mlp`: a body (every layer but the last) and a linear output head (the last layer), stated so
    that a model can hand the head to its likelihood, which may fuse it with log p(x | z)
    (`models.bernoulli_head`). One Sequential, so parameter names (decoder.0.weight, ..., decoder.4.bias)
    and checkpoints are those of the nn.Sequential it replaces."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)
        if not len(self) or not isinstance(self[-1], nn.Linear):
            raise TypeError("an MLP ends in its linear output head (nn.Linear)")

    def __getitem__(self, idx: int | slice) -> nn.Module:
        # a slice of an MLP need not end in a linear layer: it is a plain Sequential
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)

    def forward(self, x: Tensor) -> Tensor:
        # Under mixed precision (networks_in) the products in the reduced type and the output in float32.
        if _network_precision.get() is None:
            return super().forward(x)
        with network_region(x):
            if not heads_in_float32():
                return full_precision(super().forward(x))
            h = self.body(x)
        return self.head(full_precision(h))

    @property
    def head(self) -> nn.Linear:
        """The linear output layer, whose bias sets the initial output."""
        return self[-1]

    def body(self, x: Tensor) -> Tensor:
        """The input of the head: every layer but the last applied to x."""
        # Particles (K, B, H), contiguous: as one (K·B, H) matrix through the layers and viewed back once,
        # rather than flattened and viewed back by every linear layer (and again in its backward pass).
        # The same products: nn.Linear runs exactly this addmm on such an input.
        lead = x.shape[:-1]
        flat = x.dim() == 3 and x.is_contiguous() and not torch._C._are_functorch_transforms_active()
        if flat:
            x = x.view(-1, x.shape[-1])
        for layer in list(self)[:-1]:
            x = layer(x)
        return x.view(*lead, x.shape[-1]) if flat else x


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "tanh") -> MLP:
    """in_dim -> hidden[0] -> ... -> out_dim, with `activation` between layers and none at the end."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return MLP(*layers)
