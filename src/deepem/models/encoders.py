"""Amortised proposals q(z | x). The diagonal Gaussian encoder returns (mean, std); `distribution`
turns any (mean, std) into a torch distribution, so a method can build q with detached parameters
(DReG, STL) without a second encoder pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from deepem.models.networks import mlp


def diagonal_gaussian(mean: Tensor, std: Tensor) -> Independent:
    """A diagonal Gaussian over the last dimension: log_prob sums over latents."""
    return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)


class GaussianEncoder(nn.Module):
    """q(z | x) = N(mu(x), diag(sigma(x)^2)) with an MLP; sigma = exp(raw) as in Burda et al. (2015)."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (200, 200),
                 activation: str = "tanh") -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp(data_dim, hidden, 2 * latent_dim, activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(x).chunk(2, dim=-1)
        return mean, torch.exp(log_std)

    def distribution(self, x: Tensor) -> Independent:
        return diagonal_gaussian(*self(x))
