"""Distributions over latents, one per data point: the proposal q(z | x) an encoder returns, and the
start q0 of an AIS chain. They follow torch.distributions (`sample`, `rsample`, `log_prob`,
`has_rsample`) with two differences the estimators need: draws take an explicit `generator` (seeded,
reproducible evaluation), and `n` draws come out particle dimension first, shaped (n, B, Dz).

A distribution says what it can do, and refuses the rest with an error that says why:

| distribution          | sample | rsample | log_prob | support |
| --------------------- | ------ | ------- | -------- | ------- |
| DiagonalGaussian      | yes    | yes     | yes      | real    |
| FactorisedBernoulli   | yes    | no      | yes      | binary  |
| Implicit (z = f(ε))   | yes    | yes     | no       | real    |
| ChainedGaussian       | yes    | yes     | yes      | real    |
| ChainedBernoulli      | yes    | no      | yes      | binary  |

The chained ones (blocks of z, each a network of the one before) are in `inference.chained`; the names of
capabilities in `inference.capabilities` and the Gaussian densities in `inference.densities` (both also
importable from here, as before the split).

A method that needs an rsample or a density checks it before training (`methods.base`); these errors
are the last line of defence, so that a wrong gradient is never computed silently."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from deepem.errors import UserError
from deepem.inference.capabilities import (
    BINARY,
    CONTINUOUS,
    DIAGONAL_Q,
    Q_DENSITY,
    REAL,
    RSAMPLE,
    capabilities,
)
from deepem.inference.densities import LOG_2PI, normal_log_density, standard_normal_log_prob

__all__ = ["BINARY", "CONTINUOUS", "DIAGONAL_Q", "LOG_2PI", "Q_DENSITY", "REAL", "RSAMPLE",
           "DensityUnavailableError", "DiagonalGaussian", "FactorisedBernoulli", "Implicit", "LatentDistribution",
           "NotReparameterizableError", "capabilities", "normal_log_density", "standard_normal",
           "standard_normal_log_prob"]

class DensityUnavailableError(UserError, ValueError):
    """log_prob was asked of a distribution that has no density (an implicit q)."""


class NotReparameterizableError(UserError, ValueError):
    """rsample was asked of a distribution whose draws cannot carry a pathwise gradient (discrete z)."""


class LatentDistribution:
    """Base class: per-point distributions over Dz latents, batch shape (B,)."""

    has_rsample: ClassVar[bool] = False
    has_log_prob: ClassVar[bool] = True
    support: ClassVar[str] = REAL
    description: ClassVar[str] = "distribution"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws per data point, shaped (n, B, Dz), carrying no gradient."""
        raise NotImplementedError

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n reparameterised draws (gradient flows to the parameters), shaped (n, B, Dz)."""
        raise NotReparameterizableError(
            f"a {self.description} q(z|x) has no reparameterised sample: its draws carry no pathwise "
            "gradient; use a score-function or reweighted method (e.g. rws) for such latents"
        )

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z) summed over latents, for z shaped (..., B, Dz): (..., B)."""
        raise DensityUnavailableError(
            f"a {self.description} q(z|x) has no density, so log q(z|x) cannot be evaluated; importance "
            "weights need it. Estimate log p(x) with AIS from the prior instead (--estimator ais "
            "--ais-initial prior)"
        )

    def detach(self) -> LatentDistribution:
        """The same distribution with its parameters cut from the graph (DReG and STL evaluate log q
        with q's parameters held fixed, so that log q depends on φ only through z)."""
        raise NotImplementedError

    @property
    def mean(self) -> Tensor:
        """E[z] per data point, (B, Dz)."""
        raise NotImplementedError


class DiagonalGaussian(LatentDistribution):
    """N(mean, diag(std^2)) per data point; mean and std shaped (B, Dz) (or broadcastable)."""

    has_rsample = True
    support = REAL
    description = "diagonal Gaussian"

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        if mean.shape != std.shape or mean.dim() != 2:
            raise ValueError(f"mean and std must both be shaped (B, Dz), got {tuple(mean.shape)} and "
                             f"{tuple(std.shape)}")
        self.loc, self.std = mean, std

    @property
    def mean(self) -> Tensor:
        return self.loc

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn((n, *self.loc.shape), generator=generator, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.std * noise

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(n, generator)

    def log_prob(self, z: Tensor) -> Tensor:
        return normal_log_density(z, self.loc, self.std).sum(-1)

    def log_prob_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """log q(z) and its gradient in z in closed form (saves AIS a backward pass), no graph."""
        with torch.no_grad():
            return self.log_prob(z), -(z - self.loc) / self.std.pow(2)

    def detach(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.loc.detach(), self.std.detach())

    def scaled(self, factor: float) -> DiagonalGaussian:
        """The same means with every std multiplied by `factor` (a widened proposal)."""
        if factor <= 0:
            raise ValueError(f"a std scale must be > 0, got {factor}")
        return self if factor == 1.0 else DiagonalGaussian(self.loc, self.std * factor)

    def kl_to_standard_normal(self) -> Tensor:
        """KL(q || N(0, I)) per data point, closed form: (B,)."""
        return 0.5 * (self.loc.pow(2) + self.std.pow(2) - 1 - 2 * torch.log(self.std)).sum(-1)


def standard_normal(batch: int, latent_dim: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> DiagonalGaussian:
    """N(0, I) for `batch` data points."""
    zeros = torch.zeros(batch, latent_dim, dtype=dtype, device=device)
    return DiagonalGaussian(zeros, torch.ones_like(zeros))


class FactorisedBernoulli(LatentDistribution):
    """Independent Bernoulli(sigmoid(logits)) latents taking values 0 and 1; logits shaped (B, Dz)."""

    has_rsample = False
    support = BINARY
    description = "factorised Bernoulli"

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    @property
    def mean(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            probs = torch.sigmoid(self.logits).expand(n, *self.logits.shape)
            return torch.bernoulli(probs, generator=generator)

    def log_prob(self, z: Tensor) -> Tensor:
        # log Bern(z | sigmoid(l)) = -BCE(l, z), one fused kernel; expand is a view.
        return -F.binary_cross_entropy_with_logits(self.logits.expand_as(z), z, reduction="none").sum(-1)

    def detach(self) -> FactorisedBernoulli:
        return FactorisedBernoulli(self.logits.detach())

    def kl_to(self, prior_logits: Tensor) -> Tensor:
        """KL(q || Bernoulli(sigmoid(prior_logits))) per data point, closed form: (B,)."""
        p = torch.sigmoid(self.logits)
        log_q1, log_q0 = F.logsigmoid(self.logits), F.logsigmoid(-self.logits)
        log_p1, log_p0 = F.logsigmoid(prior_logits), F.logsigmoid(-prior_logits)
        return (p * (log_q1 - log_p1) + (1 - p) * (log_q0 - log_p0)).sum(-1)


class Implicit(LatentDistribution):
    """z = f(ε), ε ~ N(0, I): a sampler without a density (the implicit encoders of AVB and IWAVB).

    `transform` maps noise shaped (n, B, noise_dim) to latents (n, B, Dz) with gradient to its
    parameters; `batch` and `noise_dim` fix the noise shape."""

    has_rsample = True
    has_log_prob = False
    support = REAL
    description = "implicit (z = f(x, ε))"
    #: draws used for E[z] when a diagnostic asks for the mean
    MEAN_DRAWS: ClassVar[int] = 64

    def __init__(self, transform: Callable[[Tensor], Tensor], batch: int, noise_dim: int,
                 like: Tensor) -> None:
        self.transform, self.batch, self.noise_dim = transform, batch, noise_dim
        self._like = like  # a tensor of the wanted dtype and device

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn((n, self.batch, self.noise_dim), generator=generator, dtype=self._like.dtype,
                           device=self._like.device)

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.transform(self.noise(n, generator))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(n, generator)

    @property
    def mean(self) -> Tensor:
        """A Monte Carlo estimate of E[z] from MEAN_DRAWS draws (there is no closed form)."""
        return self.sample(self.MEAN_DRAWS).mean(0)

    def detach(self) -> Implicit:
        return self  # no density to evaluate with fixed parameters
