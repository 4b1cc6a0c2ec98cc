"""IWAE (Burda et al. 2015): the K-sample importance-weighted bound
L_K = E[log (1/K) sum_k p(x, z_k) / q(z_k | x)], reparameterised, for θ and φ together.

Its θ-gradient is the self-normalised importance sampling estimate of ∇θ log p(x) (REM, eq. 8-9)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from deepem.inference.constants import constant
from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw, weight_diagnostics
from deepem.models.lvm import DeepLatentModel


class IWAE(Method):
    name = "iwae"
    vectorisable = True

    def __init__(self, particles: int = 5) -> None:
        super().__init__(particles)

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        draws = draw(model, x, self.particles, mask=mask, generator=generator)
        log_w = draws.log_w
        # -log_mean_exp(log_w).mean(), with the logsumexp and the bound shared with the diagnostics
        log_sum = torch.logsumexp(log_w, 0)
        bound = (log_sum - constant(math.log(log_w.shape[0]), log_sum)).mean()
        loss = -bound
        return MethodOutput({THETA: loss, PHI: loss}, weight_diagnostics(log_w, log_sum, bound), log_w)
