"""AIWAE (Ding & Freedman, "Improving IWAE with annealed importance sampling", Alg. 1).

θ: AIS with K chains and T inverse temperatures β_t = t / (T - 1) along q(z|x)^(1-β) p(x, z)^β, one
HMC transition with L leapfrog steps per temperature after the first, started at z ~ q(z|x). The
self-normalised AIS weights w̃_k estimate ∇θ log p(x) = E_p(z|x)[∇θ log p(x, z)] (eq. 9-10):
    loss_θ = -Σ_k sg(w̃_k) log p(x, z_k^{T-1}).
φ: the reparameterised ELBO (eq. 2), as in the VAE.

Step sizes: one per temperature after the first (ε_1 .. ε_{T-1} of Alg. 1), kept in a registered
buffer so checkpoints restore them, and adapted after every update toward acceptance 0.6 (Sec. 5.1)
from the batch's mean acceptance at that temperature. Within a batch they are fixed, so every
forward pass is exact AIS. Nothing is back-propagated through the chains: memory does not grow with T.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deepem.inference.adaptation import TARGET_ACCEPTANCE, adapt_step_size
from deepem.inference.ais import TemperedPath, ais, chain_starts, path_values
from deepem.inference.distributions import CONTINUOUS, Q_DENSITY, RSAMPLE
from deepem.inference.numerics import effective_sample_size, log_mean_exp, normalized_weights
from deepem.inference.temperatures import make_schedule
from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw
from deepem.models.lvm import DeepLatentModel


class AIWAE(Method):
    """AIWAE Alg. 1. Options: particles K (chains), temperatures T (β_0 = 0 .. β_{T-1} = 1, so T - 1
    HMC transitions), leapfrog_steps L, step_size (initial ε for every temperature), target_acceptance,
    adaptation_rate (multiplicative change of ε per update), schedule ("linear" as in the paper, or
    "sigmoid")."""

    name = "aiwae"
    requires = frozenset({RSAMPLE, Q_DENSITY, CONTINUOUS})  # ELBO for φ, AIS from q with HMC for θ

    def __init__(self, particles: int = 5, temperatures: int = 5, leapfrog_steps: int = 5,
                 step_size: float = 0.05, target_acceptance: float = TARGET_ACCEPTANCE,
                 adaptation_rate: float = 0.02, schedule: str = "linear") -> None:
        super().__init__(particles)
        if temperatures < 2:
            raise ValueError(f"temperatures (T) must be >= 2 (β=0 and β=1), got {temperatures}")
        if leapfrog_steps < 1:
            raise ValueError(f"leapfrog_steps (L) must be >= 1, got {leapfrog_steps}")
        if step_size <= 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        if not 0.0 < target_acceptance < 1.0:
            raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
        self.temperatures = temperatures
        self.leapfrog_steps = leapfrog_steps
        self.target_acceptance = target_acceptance
        self.adaptation_rate = adaptation_rate
        self.schedule = schedule
        # β_0 = 0 .. β_{T-1} = 1, float64 on CPU; a setting, not state
        self.schedule_temperatures = make_schedule(schedule, temperatures)
        # the same as Python floats, read here once: the step reads no tensor on the host
        self.path_values = tuple(path_values(self.schedule_temperatures))
        # ε_t for t = 1 .. T-1, float64 so that repeated multiplicative updates do not drift.
        self.register_buffer("step_sizes", torch.full((temperatures - 1,), float(step_size),
                                                      dtype=torch.float64))
        self._pending_acceptance: Tensor | None = None

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        """Both losses for a batch; every random draw comes from `generator` (None: the global one)."""
        # φ: one reparameterised sample, gradient to φ through z and log q (and to θ, unused by the
        # step since θ has its own loss below).
        particle = draw(model, x, 1, generator=generator, mask=mask)
        elbo = particle.log_w  # (1, B)
        loss_phi = -elbo.mean()

        # θ: AIS from q(z|x) with q's parameters detached: the chains are samplers, not differentiated.
        initial = particle.q.detach()
        steps = [s.to(x.dtype) for s in self.step_sizes]
        # AIS with a fixed kernel per temperature (adapted between updates, in after_update).
        path = TemperedPath(lambda z: model.log_joint(x, z, mask), initial)
        result = ais(path, chain_starts(initial, self.particles, generator), self.path_values, steps,
                     self.leapfrog_steps, generator)
        weights = normalized_weights(result.log_w).detach()  # coefficients: no gradient
        z_final = result.samples.detach()
        # Gradient to θ only, through log p(x, z) at the chains' final (detached) positions.
        loss_theta = -(weights * model.log_joint(x, z_final, mask)).sum(0).mean()

        self._pending_acceptance = result.acceptance.mean(1).detach()  # (T-1,): over points and chains
        log_w = result.log_w
        diagnostics = {
            "elbo": elbo.detach().mean(),
            "ais_bound": log_mean_exp(log_w).mean(),
            "ess_fraction": effective_sample_size(log_w).mean() / self.particles,
            "acceptance": result.acceptance.mean(),
            "step_size": self.step_sizes.mean().detach().clone(),
        }
        return MethodOutput({THETA: loss_theta, PHI: loss_phi}, diagnostics, log_w)

    def after_update(self) -> None:
        """Adapt each temperature's step size toward the target acceptance, from the last batch."""
        if self._pending_acceptance is None:
            return
        acceptance = self._pending_acceptance.to(self.step_sizes)
        self.step_sizes.copy_(adapt_step_size(self.step_sizes, acceptance, self.target_acceptance,
                                              self.adaptation_rate))
        self._pending_acceptance = None
