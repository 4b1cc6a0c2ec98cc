"""Amortised proposals q(z | x). An encoder is an nn.Module whose `distribution(x)` returns a
per-point distribution object (`deepem.inference.distributions`); its class attributes say what that
object can do, so that a method can be checked against a model before any data is seen.

| encoder           | q(z | x)                                   | rsample | density | z      |
| ----------------- | ------------------------------------------ | ------- | ------- | ------ |
| GaussianEncoder   | N(mu(x), diag sigma(x)^2), sigma = exp(.)  | yes     | yes     | real   |
| BernoulliEncoder  | Bernoulli(sigmoid(l(x))) per latent         | no      | yes     | binary |
| ImplicitEncoder   | z = f(x, ε), ε ~ N(0, I)                    | yes     | no      | real   |

A user's own encoder fits if it subclasses `Encoder` (or just has these attributes and
`distribution`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from deepem.inference.capabilities import BINARY, REAL, capabilities
from deepem.inference.distributions import DiagonalGaussian, FactorisedBernoulli, Implicit, LatentDistribution
from deepem.models.networks import mlp


def diagonal_gaussian(mean: Tensor, std: Tensor) -> DiagonalGaussian:
    """A diagonal Gaussian per data point: log_prob sums over latents."""
    return DiagonalGaussian(mean, std)


class Encoder(nn.Module):
    """Base class of q(z | x): subclasses implement `distribution(x)`."""

    has_rsample: ClassVar[bool] = True
    has_log_prob: ClassVar[bool] = True
    support: ClassVar[str] = REAL
    #: q is one diagonal Gaussian (DiagonalGaussian): its std can be widened (IWEM's proposal)
    diagonal_q: ClassVar[bool] = False

    def distribution(self, x: Tensor) -> LatentDistribution:
        raise NotImplementedError

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        return capabilities(cls.has_rsample, cls.has_log_prob, cls.support, cls.diagonal_q)


class GaussianEncoder(Encoder):
    """q(z | x) = N(mu(x), diag(sigma(x)^2)) with an MLP; sigma = exp(raw) as in Burda et al. (2015).
    `forward` returns the parameters (mean, std); `distribution` the q object."""

    diagonal_q = True

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (200, 200),
                 activation: str = "tanh") -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp(data_dim, hidden, 2 * latent_dim, activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(x).chunk(2, dim=-1)
        return mean, torch.exp(log_std)

    def distribution(self, x: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(*self(x))


class BernoulliEncoder(Encoder):
    """q(z | x) = prod_u Bernoulli(z_u; sigmoid(l_u(x))) with an MLP for the logits (a sigmoid belief
    net's recognition model; hidden=() gives the linear one of Mnih & Gregor 2014)."""

    has_rsample = False
    support = BINARY

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (),
                 activation: str = "tanh") -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp(data_dim, hidden, latent_dim, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def distribution(self, x: Tensor) -> FactorisedBernoulli:
        return FactorisedBernoulli(self(x))


#: noise width of an implicit encoder: 32 in IWAVB's experiments (Gómez-Sancho & Hernández-Lobato 2020, sec. 5)
DEFAULT_NOISE_DIM = 32


class ImplicitEncoder(Encoder):
    """z = f(x, ε), ε ~ N(0, I_noise_dim) (AVB: Mescheder et al. 2017; IWAVB eq. 2.12): a flexible q
    without a density. Draws of one data point share x and differ in ε.

    Where the noise enters, and why: ε is concatenated with x at the input of the MLP, so every layer
    mixes noise and data non-linearly. Noise added only at the output (z = μ(x) + σ(x) ε) would make q
    Gaussian again; fed at the input, q(z|x) can be skewed or multimodal, and the family contains the
    Gaussian ones only approximately. noise_dim defaults to 32 (the paper's setting); with fewer noise
    dimensions than latents q lives on a lower-dimensional manifold, where log q/p(z) is infinite and
    a discriminator cannot estimate it, so keep noise_dim >= latent_dim."""

    has_log_prob = False

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (200, 200),
                 activation: str = "tanh", noise_dim: int | None = DEFAULT_NOISE_DIM) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.noise_dim = DEFAULT_NOISE_DIM if noise_dim is None else noise_dim
        if self.noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {self.noise_dim}")
        self.net = mlp(data_dim + self.noise_dim, hidden, latent_dim, activation)

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        """z for x (B, D) and noise ε (n, B, noise_dim): (n, B, Dz); gradient flows to φ (the MLP)
        and, through z, to whatever consumes it (the decoder, a discriminator)."""
        return self.net(torch.cat([x.expand(noise.shape[0], *x.shape), noise], dim=-1))

    def distribution(self, x: Tensor) -> Implicit:
        return Implicit(lambda noise: self(x, noise), x.shape[0], self.noise_dim, x)


ENCODERS: dict[str, type[Encoder]] = {"gaussian": GaussianEncoder, "bernoulli": BernoulliEncoder,
                                      "implicit": ImplicitEncoder}
