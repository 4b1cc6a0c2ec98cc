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

from deepem.inference.capabilities import Q_DENSITY
from deepem.methods.base import PHI, THETA, Draws, Method, MethodOutput, draw, weight_diagnostics
from deepem.methods.weights import coefficient_weights
from deepem.models.lvm import DeepLatentModel

PHI_UPDATES = ("wake", "sleep", "wake-sleep")


def rws_wake_losses(draws: Draws) -> tuple[Tensor, Tensor]:
    """(θ loss, wake φ loss) on given draws z ~ q(z | x), drawn without a pathwise gradient:
    -sum_k sg(α_k) log p(x, z_k) and -sum_k sg(α_k) log q(z_k | x), averaged over the batch, with
    α = softmax(log w) as detached coefficients. log_joint carries gradient to θ, log_q to φ."""
    snis_weights = coefficient_weights(draws.log_w)
    theta_loss = -(snis_weights * draws.log_joint).sum(0).mean()
    phi_loss = -(snis_weights * draws.log_q).sum(0).mean()
    return theta_loss, phi_loss


def rws_sleep_loss(model: DeepLatentModel, z: Tensor, x: Tensor) -> Tensor:
    """-mean log q(z | x) on given pairs (z, x) ~ p(z) p(x | z) ((N, Dz) and (N, D)): the sleep phase.
    The pairs are data for q: the loss carries gradient to φ only."""
    return -model.encode(x).log_prob(z).mean()


@torch.no_grad()
def dream(model: DeepLatentModel, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """n pairs z ~ p(z), x ~ p(x | z) from the current model, without a graph (the sleep phase's data)."""
    z = model.sample_prior(n, generator)
    return z, model.likelihood.sample(model.decoder(z), generator)


def sleep_loss(model: DeepLatentModel, n: int, generator: torch.Generator | None = None) -> Tensor:
    """`rws_sleep_loss` on n fresh pairs from the model (`dream`)."""
    return rws_sleep_loss(model, *dream(model, n, generator))


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

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        # z detached: log_joint carries gradient to θ only, log_q to φ through q's mean and std only.
        draws = draw(model, x, self.particles, reparameterize=False, mask=mask, generator=generator)
        theta_loss, wake_loss = rws_wake_losses(draws)
        if self.phi_update == "wake":
            phi_loss = wake_loss
        elif self.phi_update == "sleep":
            phi_loss = sleep_loss(model, x.shape[0], generator)
        else:
            phi_loss = 0.5 * (wake_loss + sleep_loss(model, x.shape[0], generator))
        log_w = draws.log_w
        return MethodOutput({THETA: theta_loss, PHI: phi_loss}, weight_diagnostics(log_w), log_w)


class WakeSleep(RWS):
    """Wake-sleep (Hinton et al. 1995; review 004, sec. 4.4): θ from one sample of q (the wake phase,
    -log p(x, h), h ~ q, which is RWS's θ-update with K = 1) and φ from the sleep phase only,
    -log q(h | x) on (x, h) ~ p(h) p(x | h). Option: `particles` (default 1: the original algorithm)."""

    name = "wake-sleep"

    def __init__(self, particles: int = 1) -> None:
        super().__init__(particles, phi_update="sleep")

