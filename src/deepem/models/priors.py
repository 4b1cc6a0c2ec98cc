"""Priors p(z): part of the generative model θ. Each is an nn.Module (a learnable prior's parameters
are trained with the decoder) with `log_prob`, `sample` and `support`.

- StandardNormalPrior: N(0, I), no parameters (Kingma & Welling 2014; Burda et al. 2015).
- BernoulliPrior: independent Bernoulli(sigmoid(b)) with learnable logits b: the top layer of a
  sigmoid belief net (Neal 1992; Mnih & Gregor 2014)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepem.inference.capabilities import BINARY, REAL
from deepem.inference.densities import standard_normal_log_prob
from deepem.inference.distributions import DiagonalGaussian, FactorisedBernoulli, standard_normal

__all__ = ["PRIORS", "BernoulliPrior", "Prior", "StandardNormalPrior", "standard_normal_log_prob"]


class Prior(nn.Module):
    """Base class: a distribution over `latent_dim` latents shared by every data point."""

    support = REAL
    name = "prior"

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) for z shaped (..., Dz), summed over latents: (...)."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> Tensor:
        """n draws shaped (n, Dz), without gradient."""
        raise NotImplementedError


class StandardNormalPrior(Prior):
    support = REAL
    name = "normal"

    def log_prob(self, z: Tensor) -> Tensor:
        return standard_normal_log_prob(z)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, dtype=dtype, device=device)

    def per_point(self, batch: int, dtype: torch.dtype, device: torch.device | str | None) -> DiagonalGaussian:
        """The prior as a per-data-point distribution (the start of AIS from the prior)."""
        return standard_normal(batch, self.latent_dim, dtype, device)

    def kl_from(self, q) -> Tensor:
        """KL(q || p) per data point in closed form when q is a diagonal Gaussian."""
        return q.kl_to_standard_normal()


class BernoulliPrior(Prior):
    support = BINARY
    name = "bernoulli"

    def __init__(self, latent_dim: int, init_logit: float = 0.0) -> None:
        super().__init__(latent_dim)
        self.logits = nn.Parameter(torch.full((latent_dim,), float(init_logit)))

    def log_prob(self, z: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(self.logits.expand_as(z), z, reduction="none").sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> Tensor:
        with torch.no_grad():
            probs = torch.sigmoid(self.logits).expand(n, self.latent_dim)
            return torch.bernoulli(probs, generator=generator).to(dtype or self.logits.dtype)

    def per_point(self, batch: int, dtype: torch.dtype, device: torch.device | str | None) -> FactorisedBernoulli:
        return FactorisedBernoulli(self.logits.detach().to(dtype).expand(batch, self.latent_dim))

    def kl_from(self, q) -> Tensor:
        return q.kl_to(self.logits)


PRIORS: dict[str, type[Prior]] = {"normal": StandardNormalPrior, "bernoulli": BernoulliPrior}
