"""Multi-layer perceptrons. Linear layers act on the last dimension, so a network applied to
particles shaped (K, B, D) runs as one batched call."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from deepem.inference.fused import fast_tanh


class Tanh(nn.Tanh):
    """nn.Tanh with the faster kernel of `inference.fused.fast_tanh` (same values to float rounding)."""

    def forward(self, x: Tensor) -> Tensor:
        return fast_tanh(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "tanh") -> nn.Sequential:
    """in_dim -> hidden[0] -> ... -> out_dim, with `activation` between layers and none at the end."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def output_layer(net: nn.Sequential) -> nn.Linear:
    """The final linear layer of an `mlp`, whose bias sets the initial output."""
    last = net[-1]
    assert isinstance(last, nn.Linear)
    return last
