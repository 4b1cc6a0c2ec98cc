"""Reweighted expectation maximisation (Dieng & Paisley 2019): REM v1 (Alg. 1) and REM v2 (Alg. 2).

Both build, per data point, the hyperproposal s(z) = N(mu, Sigma + jitter I): a full-covariance Gaussian
moment-matched to the snIS approximation of p(z | x) from K q-particles (eq. 16-19), then draw K fresh
particles from s with weights β = softmax(log p(x, z) - log s(z)) (eq. 15).

version | θ update (M-step)                              | φ update (inclusive KL, eq. 12-15)
v1      | -sum_k sg(α_k) log p(x, z_k), z ~ q (eq. 9-10) | -sum_k sg(β_k) log q(z_k | x), z ~ s (eq. 15)
v2      | -sum_k sg(β_k) log p(x, z_k), z ~ s (eq. 20)   | phi_proposal "q": -sum_k sg(α_k) log q(z_k | x),
        |                                                |   z ~ q (Table 1); "s": as v1 (Alg. 2, code)

Cost of one step: one decoder forward and backward on K particles (the θ loss) plus one decoder forward
on K particles without a graph (the weights of the other proposal); the moment matching reuses the
detached log-weights and the Cholesky factors are B small D x D matrices.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from deepem.inference.capabilities import CONTINUOUS, Q_DENSITY
from deepem.inference.moments import COVARIANCES, GaussianSample, sample_gaussian, weighted_moments
from deepem.inference.numerics import effective_sample_size, log_mean_exp
from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw, weight_diagnostics
from deepem.methods.weights import coefficient_weights
from deepem.models.lvm import DeepLatentModel

PHI_PROPOSALS = ("q", "s")


class REM(Method):
    """REM v1 (Alg. 1): θ from q-particles with α, φ by inclusive KL from s-particles with β.

    Options:
      particles (K, default 50): particles per data point, for q and for s alike (the paper used 1000
          with 20 latents; K must be >= 2 to estimate a covariance).
      covariance (default "unweighted"): how Sigma is estimated from the q-particles.
          "unweighted" is eq. 19, 1/(K-1) sum_k (z_k - mu)(z_k - mu)^T about the snIS mean mu, which
          the paper adopts to keep Sigma full rank and which the authors' released code uses. It is the
          default because the weighted estimate (eq. 18) has rank below the effective sample size: with
          K = 50 particles, 50 latents and ESS of a few, s collapses onto a few directions of width
          sqrt(jitter), and fitting q to it shrinks q's variance, which lowers the ESS further.
          "weighted" (eq. 18) converges to the posterior covariance as K grows: use it with large K.
          (The measurement behind this default: docs/reproducing-papers.md, "The EM family".)
      jitter (default 1e-6, as in the authors' code): added to Sigma's diagonal (the paper's epsilon;
          the option was called `eps` before, and that name still works: `option_aliases`).
    """

    name = "rem-v1"
    version: ClassVar[int] = 1
    requires = frozenset({Q_DENSITY, CONTINUOUS})  # s(z) is a Gaussian over real z; z is not differentiated
    option_aliases: ClassVar[dict[str, str]] = {"eps": "jitter"}  # run folders written before the rename

    def __init__(self, particles: int = 50, covariance: str = "unweighted", jitter: float = 1e-6) -> None:
        super().__init__(particles)
        if particles < 2:
            raise ValueError(f"REM needs at least 2 particles to moment-match a covariance, got {particles}")
        if covariance not in COVARIANCES:
            raise ValueError(f"unknown covariance {covariance!r}; choose one of {COVARIANCES}")
        if jitter < 0:
            raise ValueError(f"jitter (added to the covariance's diagonal) must be >= 0, got {jitter}")
        self.covariance = covariance
        self.jitter = jitter

    @torch.no_grad()
    def hyperproposal(self, z: Tensor, log_w: Tensor, generator: torch.Generator | None = None
                      ) -> GaussianSample:
        """K fresh particles from s(z), moment-matched to the snIS posterior of (z, log_w) (eq. 16-19).
        s has no free parameters (section 4.2): nothing here carries gradient. Without `host_reads` (the
        device decision) a factorisation that fails gives NaN particles, which make the step non-finite,
        instead of a ValueError."""
        mean, cov = weighted_moments(z.detach(), log_w.detach(), self.covariance)
        return sample_gaussian(mean, cov, self.particles, self.jitter, generator, host_reads=self.host_reads)

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        # q-particles, z detached: log_joint carries gradient to θ, log_q to φ via q's parameters.
        q_part = draw(model, x, self.particles, reparameterize=False, mask=mask, generator=generator)
        log_w = q_part.log_w
        alpha = coefficient_weights(log_w)
        s_part = self.hyperproposal(q_part.z, log_w, generator)
        with torch.no_grad():  # β only needs the numbers log p(x, z) - log s(z)
            log_v = model.log_joint(x, s_part.z, mask) - s_part.log_density
        beta = coefficient_weights(log_v)
        theta_loss = -(alpha * q_part.log_joint).sum(0).mean()
        # log q(z_s | x) carries gradient to φ through q's parameters; z_s is a constant.
        log_q_s = q_part.q.log_prob(s_part.z)
        phi_loss = -(beta * log_q_s).sum(0).mean()
        return MethodOutput({THETA: theta_loss, PHI: phi_loss}, _diagnostics(log_w, log_v), log_w)


class REMv2(REM):
    """REM v2 (Alg. 2): θ from s-particles with β (eq. 20); φ by inclusive KL.

    Extra option `phi_proposal` (default "q"): "q" is Table 1's reading (hyperproposal r_η, i.e. the
    wake update -sum sg(α) log q(z | x) on the q-particles), "s" is the text and Alg. 2's box ("the
    recognition network is learned the same way as for REM (v1)") and the authors' code, where φ uses
    the s-particles with β exactly as v1 does. Other options as REM v1."""

    name = "rem-v2"
    version = 2

    def __init__(self, particles: int = 50, covariance: str = "unweighted", jitter: float = 1e-6,
                 phi_proposal: str = "q") -> None:
        super().__init__(particles, covariance, jitter)
        if phi_proposal not in PHI_PROPOSALS:
            raise ValueError(f"unknown phi_proposal {phi_proposal!r}; choose one of {PHI_PROPOSALS}")
        self.phi_proposal = phi_proposal

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        # q-particles, z detached; log p(x, z) without a graph (only α and the moments use it),
        # log_q carries gradient to φ through q's parameters.
        q_part = draw(model, x, self.particles, reparameterize=False, joint_grad=False, mask=mask, generator=generator)
        log_w = q_part.log_w
        alpha = coefficient_weights(log_w)
        s_part = self.hyperproposal(q_part.z, log_w, generator)
        log_joint_s = model.log_joint(x, s_part.z, mask)  # gradient to θ only (z_s is a constant)
        log_v = log_joint_s.detach() - s_part.log_density
        beta = coefficient_weights(log_v)
        theta_loss = -(beta * log_joint_s).sum(0).mean()
        if self.phi_proposal == "q":
            phi_loss = -(alpha * q_part.log_q).sum(0).mean()
        else:
            log_q_s = q_part.q.log_prob(s_part.z)
            phi_loss = -(beta * log_q_s).sum(0).mean()
        return MethodOutput({THETA: theta_loss, PHI: phi_loss}, _diagnostics(log_w, log_v), log_w.detach())


def _diagnostics(log_w: Tensor, log_v: Tensor) -> dict[str, Tensor]:
    """q's weight diagnostics plus the same for s: its IW bound (an estimate of log p(x) with proposal s)
    and its ESS fraction, which show whether the moment-matched proposal beats the encoder."""
    out = weight_diagnostics(log_w)
    k = log_v.shape[0]
    out["s_iw_bound"] = log_mean_exp(log_v).mean()
    out["s_ess_fraction"] = effective_sample_size(log_v).mean() / k
    return out
