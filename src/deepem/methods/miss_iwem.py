"""miss-IWEM (Kim et al., section 4 and Alg. 3): IWEM for data with missing entries x = (x_o, x_m),
and its ablation miss-IWEM-woa (no annealing, section 5.3).

Proposal (section 4.1): q(x_m, z | x_o) = p(x_m | z) q(z | x̆), where x̆ = (x_o, x̆_m) is x completed once:
    z̆ ~ q(z | x̃0) with x̃0 = (x_o, 0) (the zero-filled input of `DeepLatentModel.encode`),
    x̆_m ~ p(x_m | z̆).
Because p(x_m | z) is both in the target and in the proposal it cancels from the weights:
    w_k = p(x_o, x_m,k, z_k) / q(x_m,k, z_k | x_o) = p(x_o, z_k) / q(z_k | x̆).
E/M-step (θ), eq. 9: α Q̂_m + (1 - α) L̂VAE_m with
    Q̂_m    = sum_k sg(w̄_k) log p(x_o, x_m,k, z_k),   (x_m,k, z_k) ~ q(x_m, z | x_o),  w̄ = w / sum w,
    L̂VAE_m = (1/L) sum_l log p(x_o, z_l) / q(z_l | x̆),   z_l ~ q(z | x̆).
    Q̂_m includes log p(x_m,k | z_k) of the drawn missing values: its θ-gradient has expectation zero
    under p(x_m | z; θ_t) (a score), so it adds variance and no bias; as K grows the θ-gradient at
    α = 1 tends to ∇θ log p(x_o). The ELBO part has no x_m term.
P-step (φ), eq. 10 in its rewritten form (p(x_m,j | z_j) cancelled):
    maximise log (1/J) sum_j |log p(x_o, x_m,j, z_j)| p(x_o, z_j) / q(z_j | x̆).
With mask=None (fully observed) x̆ = x, there is nothing to draw and both steps are IWEM's (Alg. 2).

Departures from Alg. 3, on purpose (IWEM's own are listed in `methods.iwem`):
- Both losses come from one forward pass at θ_t, so the P-step uses θ_t rather than θ_{t+1}; the J
  P-step draws (x_m,j, z_j) are the first J of max(K, J) draws shared with the E-step, and the ELBO's
  L draws are the same K draws (L = K; no extra decoder call).
- One completion x̆ per data point and step serves both steps, and it is a constant: no gradient
  reaches θ or φ through z̆ or x̆_m (the paper treats x̆ as a given imputed value).
- The missing values x_m,k ~ p(x_m | z_k) are drawn without a gradient: in the P-step φ reaches
  |log p(x_o, x_m,j, z_j)| through z_j with x_m,j held at its drawn value (no pathwise or score term
  for the draw of x_m,j itself; a Bernoulli x_m has no pathwise gradient anyway).
- `proposal_std_scale` widens q(z | x̆) (as IWEM's `add_var`), not the completion's q(z | x̃0).
- `completion` ("sample", the paper's; "mean"; "zero") is an option added for ablations: "zero" makes
  the proposal p(x_m | z) q(z | x̃0), i.e. MIWAE's q with miss-IWEM's E- and P-steps.

Why the completion can slow learning: it comes from q(z | x̃0), which miss-IWEM never trains (its
P-step trains q(z | x̆) only), so early on x̆_m is noisy, q(z | x̆) is a poor proposal, and the snIS bias
of a poor proposal pushes the likelihood's noise scale up, which makes x̆_m noisier still; "zero" avoids
it. The measurement (tests/methods/test_missing_training.py's model) is on docs/reproducing-papers.md,
"Missing data: UCI imputation".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from deepem.inference.capabilities import Q_DENSITY, RSAMPLE
from deepem.inference.distributions import DiagonalGaussian
from deepem.methods.base import PHI, THETA, Draws, MethodOutput, weight_diagnostics
from deepem.methods.iwem import IWEM, alpha_diagnostic, log_abs, negative_log_mean_exp_loss
from deepem.methods.weights import coefficient_weights
from deepem.models.completion import COMPLETIONS, completion
from deepem.models.lvm import DeepLatentModel


@dataclass
class CompletedDraws:
    """K draws (x_m,k, z_k) ~ p(x_m | z) q(z | x̆) with the log densities miss-IWEM needs.

    draws.log_lik is log p(x_o | z_k) and draws.log_q is log q(z_k | x̆), so draws.log_w is
    the weight of section 4.2, log p(x_o, z_k) - log q(z_k | x̆). log_lik_missing is log p(x_m,k | z_k)
    (zero without a mask); it carries gradient to θ through the decoder and to φ through z_k."""

    draws: Draws
    log_lik_missing: Tensor  # (K, B)

    @property
    def full_log_joint(self) -> Tensor:
        """log p(x_o, x_m,k, z_k)."""
        return self.draws.log_joint + self.log_lik_missing

    def first(self, n: int) -> CompletedDraws:
        return CompletedDraws(self.draws.first(n), self.log_lik_missing[:n])


def draw_completed(model: DeepLatentModel, x: Tensor, mask: Tensor | None, k: int,
                   std_scale: float = 1.0, generator: torch.Generator | None = None,
                   completion_kind: str = "sample") -> CompletedDraws:
    """Complete x once (`completion`), draw z_k ~ q(z | x̆) by reparameterisation (gradient to φ) and
    x_m,k ~ p(x_m | z_k) (no gradient through the draw), and evaluate every density with one batched
    decoder call."""
    x_completed = completion(model, x, mask, generator, completion_kind)
    q = model.encode(x_completed)  # φ's parameters of q(z | x̆); x̆ itself is a constant
    if std_scale != 1.0:
        if not isinstance(q, DiagonalGaussian):
            raise TypeError(f"proposal_std_scale needs a diagonal Gaussian q, this model's is {q.description}")
        q = q.scaled(std_scale)
    z = q.rsample(k, generator)  # (K, B, Dz), gradient to φ
    out = model.decoder(z)  # gradient to θ, and to φ through z
    log_lik = model.likelihood.log_prob(x, out, mask)  # log p(x_o | z_k)
    if mask is None:
        log_lik_missing = torch.zeros_like(log_lik)
    else:
        with torch.no_grad():
            x_missing = model.likelihood.sample(out, generator)  # (K, B, D); only ~mask entries are used
        log_lik_missing = model.likelihood.log_prob(x_missing, out, ~mask)
    return CompletedDraws(Draws(z, q.log_prob(z), model.log_prior(z), log_lik, q), log_lik_missing)


class MissIWEM(IWEM):
    """miss-IWEM (Alg. 3): annealed E-step (eq. 9) and rewritten optimal P-step (eq. 10) with the
    completed-data proposal p(x_m | z) q(z | x̆). Requires a reparameterised q with a density.

    Options, as `iwem` (annealing machinery inherited from it, a counter saved in checkpoints):
      particles (K, default 50), p_samples (J, default None = K), alpha_start (0.0), alpha_step (0.01),
      alpha_every (2500), alpha_unit ("updates" or "epochs"), proposal_std_scale (1.0 = off);
    and completion ("sample", the paper's x̆_m ~ p(x_m | z̆); "mean", x̆_m = E[x_m | z̆]; "zero", x̆ = x̃0,
      i.e. MIWAE's proposal q(z | x̃0), an ablation). See the module notes on why it matters."""

    name = "miss-iwem"
    imputation_proposal = "completed"  # q is trained on the completed x̆ (Algorithm 3)
    requires = frozenset({RSAMPLE, Q_DENSITY})

    def __init__(self, particles: int = 50, p_samples: int | None = None, alpha_start: float = 0.0,
                 alpha_step: float = 0.01, alpha_every: int = 2500, alpha_unit: str = "updates",
                 proposal_std_scale: float = 1.0, completion: str = "sample") -> None:
        super().__init__(particles, p_samples, alpha_start, alpha_step, alpha_every, alpha_unit,
                         proposal_std_scale)
        if completion not in COMPLETIONS:
            raise ValueError(f"unknown completion {completion!r}; choose one of {', '.join(COMPLETIONS)}")
        self.completion = completion

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        k, j = self.particles, self.p_samples
        draws = draw_completed(model, x, mask, max(k, j), self.proposal_std_scale, generator,
                               completion_kind=self.completion)
        e_part, p_part = draws.first(k), draws.first(j)
        a = self.step_alpha()  # (on the device decision, computed on the device: no host read)
        log_w = e_part.draws.log_w  # log p(x_o, z_k) - log q(z_k | x̆)
        snis_weights = coefficient_weights(log_w)  # detached snIS weights w̄_k
        # eq. 9: a * Q̂_m + (1 - a) * L̂VAE_m; coefficients detached, so θ gets its gradient from
        # log p(z_k) + log p(x_o | z_k) (both parts) and from log p(x_m,k | z_k) (Q̂_m only).
        coef = a * snis_weights + (1.0 - a) / k
        theta_loss = -(coef * e_part.draws.log_joint + a * snis_weights * e_part.log_lik_missing).sum(0).mean()
        # eq. 10 rewritten: log-terms log|log p(x_o, x_m,j, z_j)| + log p(x_o, z_j) - log q(z_j | x̆);
        # differentiated w.r.t. φ only (through z_j and q's parameters).
        phi_loss = negative_log_mean_exp_loss(log_abs(p_part.full_log_joint) + p_part.draws.log_w)
        diagnostics = weight_diagnostics(log_w)
        diagnostics["anneal_alpha"] = alpha_diagnostic(a)
        return MethodOutput({THETA: theta_loss, PHI: phi_loss}, diagnostics, log_w)


class MissIWEMWoa(MissIWEM):
    """miss-IWEM without annealing (miss-IWEM-woa, section 5.3): a = 1 throughout.
    Options: particles (default 50), p_samples (default None = K), proposal_std_scale (1.0),
    completion ("sample")."""

    name = "miss-iwem-woa"

    def __init__(self, particles: int = 50, p_samples: int | None = None,
                 proposal_std_scale: float = 1.0, completion: str = "sample") -> None:
        super().__init__(particles, p_samples, alpha_start=1.0, alpha_step=0.0,
                         proposal_std_scale=proposal_std_scale, completion=completion)
