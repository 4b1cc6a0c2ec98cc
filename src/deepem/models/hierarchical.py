"""Two stochastic layers (Burda et al. 2015, sec. 5: "two stochastic layers"), kept behind the
one-tensor interface: a latent z is one tensor (K, B, D1 + D2) = [z1, z2], so every method, the IW
evaluator, AIS/HMC and REM's moment matching see one vector of D1 + D2 continuous latents.

    generative model  p(z2) = N(0, I),  p(z1 | z2) = N(m(z2), diag s(z2)^2),  p(x | z1)
    encoder           q(z1 | x) = N(mu(x), diag sigma(x)^2),  q(z2 | z1) = N(mu'(z1), diag sigma'(z1)^2)

- `GaussianLayer`: a network from its input to (mean, std) of a diagonal Gaussian, std = exp(.) as in
  Burda et al.'s code; with hidden=() it is linear (the linear-Gaussian test model).
- `HierarchicalGaussianPrior`: p(z2) p(z1 | z2), a `Prior` whose conditional network belongs to θ.
- `HierarchicalEncoder`: q(z1 | x) q(z2 | z1), returning a `ChainedGaussian` (rsample z1 then z2 | z1).
- `FirstLayerDecoder`: the decoder reads z1 only, z[..., :D1] (x is independent of z2 given z1).

Which methods fit: q has an rsample and a density and z is continuous, so the IWAE family (VAE, IWAE,
DReG, STL), RWS (wake and sleep φ; the sleep phase samples the hierarchical prior ancestrally), REM,
IWEM and AIWAE all run unchanged. REM moment-matches ONE full-covariance Gaussian s(z) over the
concatenated [z1, z2]: the posterior p(z1, z2 | x) couples the layers (z2 explains z1), and a full
covariance over the joint vector keeps that z1-z2 dependence, which a product of per-layer Gaussians
s(z1) s(z2) would lose. What q is not: one diagonal Gaussian. IWEM's widened proposal
(proposal_std_scale != 1) needs that and refuses this model at bind (capability DIAGONAL_Q)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from deepem.inference.capabilities import REAL
from deepem.inference.chained import ChainedGaussian
from deepem.inference.densities import normal_log_density, standard_normal_log_prob
from deepem.inference.distributions import DiagonalGaussian, standard_normal
from deepem.models.encoders import Encoder
from deepem.models.networks import mlp
from deepem.models.priors import Prior


class GaussianLayer(nn.Module):
    """input (..., Din) -> (mean, std) of N(mean, diag std^2) over Dout units: an MLP with 2 Dout
    outputs, the second half being log std. Gradient flows to the MLP and to the input."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "tanh") -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = mlp(in_dim, hidden, 2 * out_dim, activation)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(h).chunk(2, dim=-1)
        return mean, torch.exp(log_std)


def split_layers(z: Tensor, sizes: Sequence[int]) -> list[Tensor]:
    """The blocks of z (..., sum(sizes)) one stochastic layer each, in the model's order [z1, z2, ...]."""
    if sum(sizes) != z.shape[-1]:
        raise ValueError(f"layer sizes {tuple(sizes)} do not add up to the {z.shape[-1]} latents of z")
    return list(z.split(list(sizes), dim=-1))


class HierarchicalGaussianPrior(Prior):
    """p(z1, z2) = N(z2; 0, I) N(z1; m(z2), diag s(z2)^2) over z = [z1, z2] (D1 + D2 latents).

    `conditional` (a GaussianLayer D2 -> D1) is part of θ: `generative_parameters` includes it, and
    log_prob carries gradient to it and to z. Sampling is ancestral: z2 first, then z1 | z2."""

    support = REAL
    name = "hierarchical-normal"

    def __init__(self, layer_sizes: tuple[int, int], hidden: Sequence[int] = (100, 100),
                 activation: str = "tanh") -> None:
        d1, d2 = layer_sizes
        super().__init__(d1 + d2)
        if d1 < 1 or d2 < 1:
            raise ValueError(f"both stochastic layers need >= 1 unit, got {layer_sizes}")
        self.layer_sizes = (d1, d2)
        self.conditional = GaussianLayer(d2, hidden, d1, activation)

    def log_prob(self, z: Tensor) -> Tensor:
        z1, z2 = split_layers(z, self.layer_sizes)
        mean, std = self.conditional(z2)
        return standard_normal_log_prob(z2) + normal_log_density(z1, mean, std).sum(-1)

    def per_point(self, batch: int, dtype: torch.dtype, device: torch.device | str | None) -> ChainedGaussian:
        """The prior for `batch` points as a distribution (the start of AIS from the prior): its
        conditional network is called with detached parameters, so AIS differentiates z only."""
        root = standard_normal(batch, self.layer_sizes[1], dtype, device)
        return ChainedGaussian(root, self.conditional, root_first=False, frozen=True)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> Tensor:
        """n ancestral draws [z1, z2] shaped (n, D1 + D2), without gradient."""
        p = next(self.conditional.parameters())
        dtype, device = dtype or p.dtype, device or p.device
        return self.per_point(1, dtype, device).sample(n, generator).squeeze(1)


class HierarchicalEncoder(Encoder):
    """q(z1, z2 | x) = q(z1 | x) q(z2 | z1): `first` maps x to z1's (mean, std), `second` maps z1 to
    z2's. `distribution(x)` is a ChainedGaussian with rsample and density; it is not one diagonal
    Gaussian (diagonal_q False), since z2's mean depends on the draw of z1."""

    diagonal_q = False

    def __init__(self, data_dim: int, layer_sizes: tuple[int, int], hidden: Sequence[int] = (200, 200),
                 between: Sequence[int] = (100, 100), activation: str = "tanh") -> None:
        super().__init__()
        d1, d2 = layer_sizes
        self.layer_sizes = (d1, d2)
        self.latent_dim = d1 + d2
        self.first = GaussianLayer(data_dim, hidden, d1, activation)
        self.second = GaussianLayer(d1, between, d2, activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) of q(z1 | x)."""
        return self.first(x)

    def distribution(self, x: Tensor) -> ChainedGaussian:
        return ChainedGaussian(DiagonalGaussian(*self.first(x)), self.second, root_first=True)


class FirstLayerDecoder(nn.Module):
    """p(x | z1): `net` applied to z[..., :D1], so x depends on z2 only through z1. Gradient flows to
    `net` and to z1; z2 gets none from the likelihood."""

    def __init__(self, net: nn.Module, first_dim: int) -> None:
        super().__init__()
        self.net = net
        self.first_dim = first_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[..., :self.first_dim])
