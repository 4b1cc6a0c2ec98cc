"""VAE (Kingma & Welling 2014; AEVB in Islam et al., review 004): the reparameterised ELBO,
averaged over K samples, updates θ and φ together."""

from __future__ import annotations

import torch
from torch import Tensor

from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw, weight_diagnostics
from deepem.models.lvm import DeepLatentModel


class VAE(Method):
    name = "vae"
    vectorisable = True

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        draws = draw(model, x, self.particles, mask=mask, generator=generator)
        log_w = draws.log_w  # gradient to θ through log p, to φ through z and log q
        loss = -log_w.mean()
        return MethodOutput({THETA: loss, PHI: loss}, weight_diagnostics(log_w), log_w)
