"""Helpers shared by the EM-family methods: particles from a (possibly widened) encoder proposal,
and self-normalised weights fit to serve as gradient coefficients.

`sample_proposal` generalises `base.draw_particles`:

- REM v2 needs log-weights of q-particles only as numbers (for moment matching and α), while log q of
  the same particles carries gradient to φ (wake update): `joint_grad=False` skips the decoder graph.
- IWEM's released code widens q's variance for the proposal (its `add_var`); the weights then use the
  widened density, which `std_scale` gives.

`coefficient_weights` flushes negligible weights to exactly zero (see there)."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor

from deepem.inference.numerics import normalized_weights
from deepem.methods.base import Particles
from deepem.models.encoders import diagonal_gaussian
from deepem.models.lvm import DeepLatentModel


def sample_proposal(model: DeepLatentModel, x: Tensor, k: int, std_scale: float = 1.0,
                    reparameterize: bool = True, joint_grad: bool = True,
                    generator: torch.Generator | None = None) -> Particles:
    """K draws z ~ N(mean(x), (std_scale * std(x))^2) with log q under that same (widened) density.

    Gradient flow: log_q carries gradient to φ through q's mean and std (and through z when
    reparameterize=True); log_prior / log_lik carry gradient to θ (and to φ through a reparameterised z)
    unless joint_grad=False, in which case they are plain numbers (no graph is built)."""
    if std_scale <= 0:
        raise ValueError(f"std_scale must be > 0, got {std_scale}")
    mean, std = model.encoder(x)
    if std_scale != 1.0:
        std = std * std_scale
    eps = torch.randn((k, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
    z = mean + std * eps
    if not reparameterize:
        z = z.detach()
    log_q = diagonal_gaussian(mean, std).log_prob(z)
    with nullcontext() if joint_grad else torch.no_grad():
        log_prior = model.log_prior(z)
        log_lik = model.log_likelihood(x, z)
    return Particles(z, log_q, log_prior, log_lik, mean, std)


def coefficient_weights(log_w: Tensor) -> Tensor:
    """Detached self-normalised weights softmax(log_w) over particles, for use as gradient coefficients,
    with weights below eps^2 of the dtype set to exactly zero.

    Why: with a poor proposal most weights are astronomically small, e.g. 1e-40, in float32's denormal
    range, and CPU matmuls on denormal operands run several times slower (REM v2's decoder backward
    measured 4x slower). Dropping them changes a gradient by less than K * eps^2 relative to the
    largest weight (>= 1/K): far below rounding."""
    w = normalized_weights(log_w.detach())
    return torch.where(w < torch.finfo(w.dtype).eps ** 2, torch.zeros_like(w), w)
