"""Exact log p(x) and p(z | x) of a model with a few binary latents, by summing over all 2^Dz states.

Sigmoid belief nets with up to about 16 latents can be evaluated exactly this way; the tests use it as
the ground truth for the importance-weighted estimator and for gradients of a learnable prior."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from deepem.models.lvm import DeepLatentModel

MAX_ENUMERATED_LATENTS = 20


def binary_states(latent_dim: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
                  ) -> Tensor:
    """All 2^latent_dim binary vectors, shaped (2^Dz, Dz)."""
    if latent_dim > MAX_ENUMERATED_LATENTS:
        raise ValueError(f"enumerating {latent_dim} binary latents means 2^{latent_dim} states; at most "
                         f"{MAX_ENUMERATED_LATENTS} are supported")
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=latent_dim)), dtype=dtype, device=device)


def exact_log_joint_table(model: DeepLatentModel, x: Tensor, mask: Tensor | None = None) -> Tensor:
    """log p(x, z) for every binary state z (rows) and data point (columns): (2^Dz, B).
    Differentiable in the model's parameters."""
    if model.latent_support != "binary":
        raise ValueError(f"enumeration needs binary latents; this model's are {model.latent_support}")
    states = binary_states(model.latent_dim, x.dtype, x.device)
    z = states.unsqueeze(1).expand(-1, x.shape[0], -1)  # (S, B, Dz)
    return model.log_joint(x, z, mask)


def exact_log_marginal(model: DeepLatentModel, x: Tensor, mask: Tensor | None = None) -> Tensor:
    """log p(x) = logsumexp_z log p(x, z) per data point: (B,)."""
    return torch.logsumexp(exact_log_joint_table(model, x, mask), dim=0)


def exact_posterior_means(model: DeepLatentModel, x: Tensor, mask: Tensor | None = None) -> Tensor:
    """E[z | x] under the exact posterior, per data point: (B, Dz)."""
    table = exact_log_joint_table(model, x, mask)
    probs = torch.softmax(table, dim=0)  # (S, B)
    states = binary_states(model.latent_dim, x.dtype, x.device)
    return probs.T @ states
