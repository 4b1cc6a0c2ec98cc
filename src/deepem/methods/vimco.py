"""VIMCO (Mnih & Rezende 2016, "Variational inference for Monte Carlo objectives"; review 004, sec. 7):
the K-sample bound L = log (1/K) sum_k w_k, w_k = p(x, h_k) / q(h_k | x), h_k ~ q, for latents that
cannot be reparameterised. Its φ-gradient (eq. 10 of the paper) is

    sum_k L(h_k | h_-k) ∇φ log q(h_k | x)  +  sum_k w̃_k ∇φ log w_k,
    L(h_k | h_-k) = L - log (1/K) (sum_{i≠k} w_i + ŵ_-k),   ŵ_-k = exp(mean_{i≠k} log w_i),

a score-function term whose learning signal for sample k is centred by a leave-one-out baseline (sample
k's weight replaced by the geometric mean of the others') plus the direct term. θ gets the bound's own
gradient sum_k w̃_k ∇θ log p(x, h_k). Both come from one surrogate,
    loss = -(L + sum_k sg(L(h_k | h_-k)) log q(h_k | x))
with h detached: the first term gives θ's gradient and the direct φ term, the second the score term.
Everything is in log space: the leave-one-out sums are logsumexps, never exponentiated weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from deepem.inference.capabilities import Q_DENSITY
from deepem.inference.numerics import log_mean_exp
from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw, weight_diagnostics
from deepem.models.lvm import DeepLatentModel


def leave_one_out_bounds(log_w: Tensor) -> Tensor:
    """log (1/K) (sum_{i≠k} w_i + ŵ_-k) for every k, from log-weights (K, ...): shaped like log_w.

    Row k of the (K, K, ...) table is log_w with entry k replaced by the mean of the other K - 1
    log-weights (the log of their geometric mean); its logsumexp is the leave-one-out sum."""
    k = log_w.shape[0]
    if k < 2:
        raise ValueError("VIMCO's leave-one-out baseline needs at least 2 particles")
    others_mean = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # (K, ...)
    table = log_w.unsqueeze(0).expand(k, *log_w.shape).clone()  # table[j, i] = log w_i
    idx = torch.arange(k, device=log_w.device)
    table[idx, idx] = others_mean
    return torch.logsumexp(table, dim=1) - math.log(k)


def vimco_surrogate(log_joint: Tensor, log_q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(surrogate per data point (B,), bound per data point (B,), log-weights (K, B)) for particles that
    were drawn without a pathwise gradient. Minimising -surrogate gives VIMCO's gradients (module notes)."""
    log_w = log_joint - log_q
    bound = log_mean_exp(log_w)  # (B,)
    with torch.no_grad():
        signal = bound.unsqueeze(0) - leave_one_out_bounds(log_w)  # L(h_k | h_-k), (K, B)
    return bound + (signal * log_q).sum(0), bound, log_w


class VIMCO(Method):
    """VIMCO. Option: `particles` K >= 2 (default 5; the paper uses 2 to 50). Works for any q with a
    density, discrete or continuous; it is the multi-sample method of choice for binary latents."""

    name = "vimco"
    requires = frozenset({Q_DENSITY})

    def __init__(self, particles: int = 5) -> None:
        super().__init__(particles)
        if particles < 2:
            raise ValueError(f"VIMCO needs particles (K) >= 2 for its leave-one-out baselines, got {particles}")

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        # h detached: log_joint carries gradient to θ, log_q to φ through q's parameters.
        draws = draw(model, x, self.particles, reparameterize=False, mask=mask, generator=generator)
        surrogate, _, log_w = vimco_surrogate(draws.log_joint, draws.log_q)
        loss = -surrogate.mean()
        return MethodOutput({THETA: loss, PHI: loss}, weight_diagnostics(log_w), log_w)
