"""Posterior-collapse diagnostics of the encoder (Burda et al. 2015; REM Fig. 2): active units and
the KL divergence of q(z | x) to the prior."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from deepem.models.lvm import DeepLatentModel


@torch.no_grad()
def encoder_means(model: DeepLatentModel, data: Tensor, batch_size: int = 1000, mask: Tensor | None = None
                  ) -> Tensor:
    """E_q[z | x] for every row: exact for Gaussian and Bernoulli q, a Monte Carlo mean for an implicit q."""
    p = next(model.parameters())
    parts = []
    for i in range(0, data.shape[0], batch_size):
        m = None if mask is None else mask[i:i + batch_size].to(p.device)
        parts.append(model.encode(data[i:i + batch_size].to(p.device, p.dtype), m).mean)
    return torch.cat(parts)


def active_units(model: DeepLatentModel, data: Tensor, threshold: float = 0.01,
                 means: Tensor | None = None) -> int:
    """Latents u whose posterior mean varies over the data: Cov_x(E_q[z_u]) > threshold."""
    means = encoder_means(model, data) if means is None else means
    return int((means.var(dim=0, unbiased=True) > threshold).sum())


@torch.no_grad()
def kl_to_prior(model: DeepLatentModel, data: Tensor, batch_size: int = 1000, mask: Tensor | None = None
                ) -> float:
    """Average over data of KL(q(z | x) || p(z)), in closed form (diagonal Gaussian q against N(0, I),
    factorised Bernoulli q against a Bernoulli prior); NaN for a q without a density (implicit)."""
    if not getattr(model.encoder, "has_log_prob", True):
        return math.nan
    p = next(model.parameters())
    total = 0.0
    for i in range(0, data.shape[0], batch_size):
        m = None if mask is None else mask[i:i + batch_size].to(p.device)
        q = model.encode(data[i:i + batch_size].to(p.device, p.dtype), m)
        total += float(model.prior.kl_from(q).sum())
    return total / data.shape[0]
