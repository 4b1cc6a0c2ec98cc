"""Posterior-collapse diagnostics of the encoder (Burda et al. 2015; REM Fig. 2)."""

from __future__ import annotations

import torch
from torch import Tensor

from deepem.models.lvm import DeepLatentModel


@torch.no_grad()
def encoder_means(model: DeepLatentModel, data: Tensor, batch_size: int = 1000) -> Tensor:
    p = next(model.parameters())
    return torch.cat([model.encoder(data[i:i + batch_size].to(p.device, p.dtype))[0]
                      for i in range(0, data.shape[0], batch_size)])


def active_units(model: DeepLatentModel, data: Tensor, threshold: float = 0.01,
                 means: Tensor | None = None) -> int:
    """Latents u whose posterior mean varies over the data: Cov_x(E_q[z_u]) > threshold."""
    means = encoder_means(model, data) if means is None else means
    return int((means.var(dim=0, unbiased=True) > threshold).sum())


@torch.no_grad()
def kl_to_prior(model: DeepLatentModel, data: Tensor, batch_size: int = 1000) -> float:
    """Average over data of KL(q(z | x) || N(0, I)), closed form for a diagonal Gaussian q."""
    p = next(model.parameters())
    total = 0.0
    for i in range(0, data.shape[0], batch_size):
        mean, std = model.encoder(data[i:i + batch_size].to(p.device, p.dtype))
        kl = 0.5 * (mean.pow(2) + std.pow(2) - 1 - 2 * torch.log(std)).sum(-1)
        total += float(kl.sum())
    return total / data.shape[0]
