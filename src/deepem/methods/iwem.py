"""Importance weighted EM (Kim et al., Alg. 2) and its ablations IWEM-woo and IWEM-woa (section 5.2).

E/M-step (θ), eq. 8: the annealed objective a * Q̂ + (1 - a) * ELBO, where Q̂ = sum_k sg(α_k) log p(x, z_k)
    is the snIS estimate of the EM objective (eq. 2) and the ELBO's θ-gradient is that of the mean of
    log p(x, z). Both use the same K draws z ~ q (the paper's L = 1 separate ELBO draw becomes L = K
    shared draws: no extra decoder call, and the paper reports L does not matter), so the θ loss is
    -sum_k c_k log p(x, z_k) with c_k = a α_k + (1 - a) / K: snIS weights mixed with uniform ones.
    The annealing controller a starts at `alpha_start` and rises by `alpha_step` every `alpha_every`
    `alpha_unit`s ("updates" or "epochs"), capped at 1 (Alg. 2's last line).
P-step (φ), eq. 7 ("optimal P-step"): maximise log (1/J) sum_j |log p(x, z_j)| p(x, z_j) / q(z_j | x)
    over J reparameterised draws from q: q is pulled towards q_opt ∝ |log p(x, z)| p(x, z), which
    minimises the variance of Q̂ (Owen 2013).
IWEM-woo: the P-step is IWAE's (Alg. 1): maximise log (1/J) sum_j p(x, z_j) / q(z_j | x).
IWEM-woa: no annealing, a = 1 throughout.

Departures from Alg. 2, on purpose: both losses come from one forward pass at θ_t, so the P-step uses
θ_t rather than θ_{t+1} (the usual joint-update form, as every other method here); and when the
E-step and P-step proposals are the same, the J P-step draws are the first J of max(K, J) shared draws.
`proposal_std_scale` c widens q's std for the proposal (the authors' code multiplies q's variance by
`add_var` = c^2, default 1.5 there, i.e. c = 1.22); the weights then use the widened density. It widens
the E-step proposal and the optimal P-step's draws (the code's `add_var` and `p_add_var`); IWEM-woo's
IWAE P-step keeps the plain q, as in that code.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from deepem.inference.capabilities import DIAGONAL_Q
from deepem.inference.numerics import log_mean_exp
from deepem.methods.base import (
    PHI,
    THETA,
    Draws,
    IncompatibleModelError,
    Method,
    MethodOutput,
    draw,
    weight_diagnostics,
)
from deepem.methods.weights import coefficient_weights
from deepem.models.lvm import DeepLatentModel

ALPHA_UNITS = ("updates", "epochs")


def optimal_p_step_log_weights(draws: Draws) -> Tensor:
    """log(|log p(x, z)| p(x, z) / q(z | x)) per particle: the summand of eq. 7.

    |log p(x, z)| is floored at the smallest positive normal of the dtype so a joint of exactly 1
    contributes a zero weight instead of log 0 = -inf."""
    return log_abs(draws.log_joint) + draws.log_w


def log_abs(log_joint: Tensor) -> Tensor:
    """log |log p|, floored at log of the dtype's smallest positive normal (the factor of q_opt)."""
    return torch.log(log_joint.abs().clamp_min(torch.finfo(log_joint.dtype).tiny))


def negative_log_mean_exp_loss(log_terms: Tensor) -> Tensor:
    """-mean over the batch of log (1/J) sum_j exp(log_terms_j), for (J, B) log_terms.

    Value: -log_mean_exp(log_terms); gradient: -sum_j sg(r_j) ∇ log_terms_j, r = softmax(log_terms),
    which is log_mean_exp's own gradient but with negligible r flushed to zero (see
    coefficient_weights: denormal coefficients slow the decoder backward on CPU)."""
    value = log_mean_exp(log_terms.detach())
    surrogate = (coefficient_weights(log_terms) * (log_terms - log_terms.detach())).sum(0)
    return -(value + surrogate).mean()


def alpha_diagnostic(a: float | Tensor) -> Tensor:
    """The controller's value as a float32 0-dim metric."""
    return a.float() if isinstance(a, Tensor) else torch.tensor(a)


class IWEM(Method):
    """IWEM (Alg. 2): annealed E-step (eq. 8) and optimal P-step (eq. 7).

    Options:
      particles (K, default 50: the authors' code): E-step draws per data point.
      p_samples (J, default None = K): P-step draws; the paper finds J = 50 best (Table 2).
      alpha_start (default 0.0), alpha_step (default 0.01): the annealing controller a starts at
          alpha_start and rises by alpha_step, capped at 1.
      alpha_every (default 2500), alpha_unit (default "updates"): a rises every alpha_every updates or
          epochs. 2500 updates is one epoch of binarised MNIST (50000 images) at batch 20, so the
          default reaches a = 1 after 250000 updates (100 such epochs). The paper's own schedule,
          +0.01 per epoch, is alpha_every=1, alpha_unit="epochs".
      proposal_std_scale (default 1.0 = off): widen q's std for the proposal (see the module notes).
    The annealing counter is a registered buffer, so checkpoints save and restore it."""

    name = "iwem"
    optimal_p_step: ClassVar[bool] = True

    def __init__(self, particles: int = 50, p_samples: int | None = None, alpha_start: float = 0.0,
                 alpha_step: float = 0.01, alpha_every: int = 2500, alpha_unit: str = "updates",
                 proposal_std_scale: float = 1.0) -> None:
        super().__init__(particles)
        if p_samples is not None and p_samples < 1:
            raise ValueError(f"p_samples (J) must be >= 1 or None (same as particles), got {p_samples}")
        if not 0.0 <= alpha_start <= 1.0:
            raise ValueError(f"alpha_start must lie in [0, 1], got {alpha_start}")
        if alpha_step < 0:
            raise ValueError(f"alpha_step must be >= 0, got {alpha_step}")
        if alpha_every < 1:
            raise ValueError(f"alpha_every must be >= 1, got {alpha_every}")
        if alpha_unit not in ALPHA_UNITS:
            raise ValueError(f"unknown alpha_unit {alpha_unit!r}; choose one of {ALPHA_UNITS}")
        if proposal_std_scale <= 0:
            raise ValueError(f"proposal_std_scale must be > 0, got {proposal_std_scale}")
        self.p_samples = particles if p_samples is None else p_samples
        self.alpha_start = alpha_start
        self.alpha_step = alpha_step
        self.alpha_every = alpha_every
        self.alpha_unit = alpha_unit
        self.proposal_std_scale = proposal_std_scale
        # number of elapsed alpha_units (updates or epochs); a buffer so checkpoints carry it.
        self.register_buffer("anneal_count", torch.zeros((), dtype=torch.long))

    def bind(self, model: DeepLatentModel) -> None:
        """Besides the usual requirements, a widened proposal (proposal_std_scale != 1) needs q to be
        one diagonal Gaussian; refuse other q (two stochastic layers, a chained q) before training."""
        super().bind(model)
        if self.proposal_std_scale != 1.0 and DIAGONAL_Q not in model.capabilities():
            raise IncompatibleModelError(
                f"{self.name} with proposal_std_scale={self.proposal_std_scale} widens the std of a diagonal "
                f"Gaussian q(z|x), and this model's encoder ({type(model.encoder).__name__}) is not one; "
                "use proposal_std_scale=1.0 with it")

    # annealing --------------------------------------------------------------------------------
    @property
    def anneal_alpha(self) -> float:
        """The annealing controller a = min(alpha_start + alpha_step * floor(count / alpha_every), 1)."""
        rises = int(self.anneal_count) // self.alpha_every
        return min(self.alpha_start + self.alpha_step * rises, 1.0)

    def step_alpha(self) -> float | Tensor:
        """The controller as the step uses it: a Python float where host reads are free (CPU: no extra
        ATen calls), the tensor of `anneal_alpha_tensor` where they are not (the device decision)."""
        return self.anneal_alpha if self.host_reads else self.anneal_alpha_tensor()

    def anneal_alpha_tensor(self) -> Tensor:
        """`anneal_alpha` as a 0-dim float64 tensor on the counter's device, computed there: the step reads
        nothing on the host (no wait for the device, and it can be captured as a CUDA graph). float64 does
        the arithmetic Python's floats do, so the coefficients are the same bits."""
        rises = torch.div(self.anneal_count, self.alpha_every, rounding_mode="floor").to(torch.float64)
        return (self.alpha_start + self.alpha_step * rises).clamp(max=1.0)

    def after_update(self) -> None:
        if self.alpha_unit == "updates":
            self.anneal_count += 1

    def after_epoch(self, epoch: int) -> None:
        if self.alpha_unit == "epochs":
            self.anneal_count += 1

    # losses -----------------------------------------------------------------------------------
    def p_step_loss(self, p_part: Draws) -> Tensor:
        """-mean over the batch of eq. 7 (optimal P-step), or of IWAE's bound for IWEM-woo."""
        log_terms = optimal_p_step_log_weights(p_part) if self.optimal_p_step else p_part.log_w
        return negative_log_mean_exp_loss(log_terms)

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        k, j, scale = self.particles, self.p_samples, self.proposal_std_scale
        shared = self.optimal_p_step or scale == 1.0  # E- and P-step draw from the same proposal
        # reparameterised draws: log_joint carries gradient to θ, and to φ through z (used only by
        # the P-step loss, which is differentiated w.r.t. φ alone); log_q to φ.
        draws = draw(model, x, max(k, j) if shared else k, std_scale=scale, mask=mask, generator=generator)
        e_part = draws.first(k)
        p_part = draws.first(j) if shared else draw(model, x, j, mask=mask, generator=generator)
        a = self.step_alpha()
        log_w = e_part.log_w
        coef = a * coefficient_weights(log_w) + (1.0 - a) / k  # detached coefficients
        theta_loss = -(coef * e_part.log_joint).sum(0).mean()
        phi_loss = self.p_step_loss(p_part)
        diagnostics = weight_diagnostics(log_w)
        diagnostics["anneal_alpha"] = alpha_diagnostic(a)
        return MethodOutput({THETA: theta_loss, PHI: phi_loss}, diagnostics, log_w)


class IWEMWoo(IWEM):
    """IWEM without the optimal P-step (IWEM-woo, section 5.2): φ maximises IWAE's bound over J draws
    from the plain q (Alg. 1's P-step). Options as `iwem`."""

    name = "iwem-woo"
    optimal_p_step = False


class IWEMWoa(IWEM):
    """IWEM without annealing (IWEM-woa, section 5.2): the E-step is the snIS objective from the start
    (a = 1). Options: particles (default 50), p_samples (default None = K), proposal_std_scale (1.0)."""

    name = "iwem-woa"

    def __init__(self, particles: int = 50, p_samples: int | None = None,
                 proposal_std_scale: float = 1.0) -> None:
        super().__init__(particles, p_samples, alpha_start=1.0, alpha_step=0.0,
                         proposal_std_scale=proposal_std_scale)

