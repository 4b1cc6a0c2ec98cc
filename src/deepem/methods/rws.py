"""Reweighted wake-sleep (Bornschein & Bengio 2014; review 004, section 4.5).

θ: the self-normalised importance sampling estimate of ∇θ log p(x) (review eq. 14, REM eq. 10),
    loss = -sum_k sg(α_k) log p(x, z_k), z_k ~ q(z | x) not reparameterised, α = softmax(log w).
φ, chosen by `phi_update`:
    "wake":  -sum_k sg(α_k) log q(z_k | x) on the same particles (review eq. 15): a snIS estimate of
             the gradient of the inclusive KL(p(z | x) || q(z | x)).
    "sleep": -log q(z | x) on (x, z) ~ p(z) p(x | z) drawn from the model (the original wake-sleep
             sleep phase): the inclusive KL averaged over the model's own data, not the training data.
    "wake-sleep": the average of the two.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deepem.inference.distributions import Q_DENSITY
from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw_particles, weight_diagnostics
from deepem.methods.weights import coefficient_weights
from deepem.models.lvm import DeepLatentModel

PHI_UPDATES = ("wake", "sleep", "wake-sleep")


def sleep_loss(model: DeepLatentModel, n: int) -> Tensor:
    """-mean log q(z | x) over n pairs z ~ p(z), x ~ p(x | z) from the current model.

    The pairs are drawn without a graph (they are data for q); the loss carries gradient to φ only."""
    with torch.no_grad():
        z = model.sample_prior(n)
        x = model.likelihood.sample(model.decoder(z))
    return -model.encode(x).log_prob(z).mean()


class RWS(Method):
    """Reweighted wake-sleep. Options: `particles` K (default 5, as in the review's RWS runs) and
    `phi_update` in {"wake", "sleep", "wake-sleep"} (default "wake": Le et al. 2018 find wake-φ the
    better encoder update; the sleep phase fits q to the model's data, not the training data)."""

    name = "rws"
    requires = frozenset({Q_DENSITY})  # z is never differentiated: discrete latents are fine

    def __init__(self, particles: int = 5, phi_update: str = "wake") -> None:
        super().__init__(particles)
        if phi_update not in PHI_UPDATES:
            raise ValueError(f"unknown phi_update {phi_update!r}; choose one of {PHI_UPDATES}")
        self.phi_update = phi_update

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None) -> MethodOutput:
        # z detached: log_joint carries gradient to θ only, log_q to φ through q's mean and std only.
        particles = draw_particles(model, x, self.particles, reparameterize=False, mask=mask)
        log_w = particles.log_w
        alpha = coefficient_weights(log_w)  # detached coefficients
        theta_loss = -(alpha * particles.log_joint).sum(0).mean()
        losses = {THETA: theta_loss}
        if self.phi_update == "wake":
            losses[PHI] = -(alpha * particles.log_q).sum(0).mean()
        elif self.phi_update == "sleep":
            losses[PHI] = sleep_loss(model, x.shape[0])
        else:
            wake = -(alpha * particles.log_q).sum(0).mean()
            losses[PHI] = 0.5 * (wake + sleep_loss(model, x.shape[0]))
        return MethodOutput(losses, weight_diagnostics(log_w), log_w)


class WakeSleep(RWS):
    """Wake-sleep (Hinton et al. 1995; review 004, sec. 4.4): θ from one sample of q (the wake phase,
    -log p(x, h), h ~ q, which is RWS's θ-update with K = 1) and φ from the sleep phase only,
    -log q(h | x) on (x, h) ~ p(h) p(x | h). Option: `particles` (default 1: the original algorithm)."""

    name = "wake-sleep"

    def __init__(self, particles: int = 1) -> None:
        super().__init__(particles, phi_update="sleep")

