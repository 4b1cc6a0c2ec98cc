"""AVB and IWAVB: training with an implicit q(z|x) (z = f(x, ε), no density), the log-ratio
log q(z|x) - log p(z) estimated by a discriminator T_ω(x, z) that the method owns (discriminator.py).

    AVB (Mescheder et al. 2017; IWAVB paper eq. 2.15), K = 1 by default:
        θ, φ: maximise  log p(x|z) - T(x, z),                      z ~ q(z|x) reparameterised
    IWAVB (Gómez-Sancho & Hernández-Lobato 2020, eq. 3.1-3.2), K = 5 by default:
        θ, φ: maximise  log (1/K) Σ_k exp(log p(x|z_k) - T(x, z_k)),  z_k ~ q(z|x)
    ω (both): minimise the logistic loss of eq. 2.14 on z ~ q (label 1, z detached) against
        z ~ p(z) (label 0), whose optimum is T* = log q(z|x) - log p(z).

With T = T*, log p(x|z) - T(x, z) = log p(x, z) - log q(z|x): the objectives are the ELBO and the
IWAE bound. With a learnt T they are estimates, not bounds, and every diagnostic says so.

Gradients: z carries φ's gradient (pathwise) into log p(x|z) and into T; T's parameters ω also appear
in the θ/φ loss, but the trainer differentiates each loss with respect to its own group only, so that
loss never moves ω, and T's own loss sees z detached, so it never moves φ. The dependence of T* on φ
(through q) is ignored, as in AVB: E_q[∇φ T*(x, z)] = 0 at fixed z (eq. 2.15 and below).

p(z) is taken as fixed: without the contrast log p(z) lives inside T, so a learnable continuous prior
would get no gradient (the library's continuous prior is N(0, I), which has no parameters).

Options common to both: discriminator_hidden (T's hidden widths; None = the encoder's, or 200-200),
discriminator_activation, adaptive_contrast (sec. 3.3 of Mescheder et al.; the IWAVB paper uses it,
default False here) and contrast_draws (the fixed draws that estimate an implicit q's mean and std
for the contrast; a Gaussian q's are exact)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from deepem.inference.capabilities import CONTINUOUS, RSAMPLE
from deepem.inference.distributions import LatentDistribution
from deepem.inference.numerics import effective_sample_size, log_mean_exp
from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw
from deepem.methods.discriminator import (
    DEFAULT_HIDDEN,
    DISCRIMINATOR,
    Contrast,
    Discriminator,
    classification_accuracy,
    contrast_noise,
    hidden_widths,
    logistic_loss,
    moment_contrast,
)
from deepem.models.likelihoods import observed
from deepem.models.lvm import DeepLatentModel

#: log q(z|x) - log p(z) for the zero-filled x (B, D) and z (K, B, Dz): (K, B)
LogRatio = Callable[[Tensor, Tensor], Tensor]


class AVB(Method):
    """Adversarial variational Bayes, eq. 2.15 (K particles averaged; the paper's K = 1).

    Options: particles (K), discriminator_hidden, discriminator_activation, adaptive_contrast,
    contrast_draws. Groups: theta, phi, discriminator.

    `exact_log_ratio`, None by default, replaces the estimate of log q(z|x) - log p(z) by a function
    (x, z) -> (K, B) (tests substitute the exact one of a Gaussian q); T is still trained."""

    name = "avb"
    requires = frozenset({RSAMPLE, CONTINUOUS})
    loss_groups = (THETA, PHI, DISCRIMINATOR)
    #: the IWAVB paper's settings (sec. 5): Adam, 5e-5 for the generative model and q, 1e-4 for the
    #: discriminator (the larger rate keeps T near its optimum for the current q), one T step per batch.
    default_optim: ClassVar[dict[str, dict[str, Any]]] = {
        THETA: {"lr": 5e-5},
        PHI: {"lr": 5e-5},
        DISCRIMINATOR: {"lr": 1e-4, "steps": 1},
    }

    def __init__(self, particles: int = 1, discriminator_hidden: Sequence[int] | None = None,
                 discriminator_activation: str = "tanh", adaptive_contrast: bool = False,
                 contrast_draws: int = 32) -> None:
        super().__init__(particles)
        if discriminator_hidden is not None and any(h < 1 for h in discriminator_hidden):
            raise ValueError(f"discriminator_hidden widths must be >= 1, got {list(discriminator_hidden)}")
        if adaptive_contrast and contrast_draws < 2:
            raise ValueError(f"contrast_draws must be >= 2 to estimate q's std, got {contrast_draws}")
        self.discriminator_hidden = None if discriminator_hidden is None else list(discriminator_hidden)
        self.discriminator_activation = discriminator_activation
        self.adaptive_contrast = adaptive_contrast
        self.contrast_draws = contrast_draws
        self.discriminator: Discriminator | None = None
        self.exact_log_ratio: LogRatio | None = None
        self.register_buffer("contrast_noise", None)  # fixed ε of the contrast's moments (set at bind)

    # the discriminator, sized to the model -----------------------------------------------------
    def bind(self, model: DeepLatentModel) -> None:
        """Build T_ω(x, z) for the model's data and latent sizes, on its device and dtype, and, for the
        adaptive contrast of an implicit encoder, the fixed noise of its moments."""
        super().bind(model)
        p = next(model.parameters())
        if self.discriminator is None:
            hidden = self.discriminator_hidden
            if hidden is None:
                hidden = hidden_widths(model.encoder) or list(DEFAULT_HIDDEN)
            self.discriminator = Discriminator(model.data_dim, model.latent_dim, hidden,
                                               self.discriminator_activation).to(p.device, p.dtype)
        noise_dim = getattr(model.encoder, "noise_dim", None)
        if self.adaptive_contrast and self.contrast_noise is None and noise_dim is not None:
            self.contrast_noise = contrast_noise(self.contrast_draws, noise_dim).to(p.device, p.dtype)

    def extra_parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {DISCRIMINATOR: [] if self.discriminator is None else list(self.discriminator.parameters())}

    def _t(self) -> Discriminator:
        if self.discriminator is None:
            raise RuntimeError(f"method {self.name!r} has no discriminator yet: call bind(model) first")
        return self.discriminator

    # the log-ratio and T's loss -----------------------------------------------------------------
    def contrast(self, q: LatentDistribution, generator: torch.Generator | None = None) -> Contrast | None:
        """The adaptive contrast r(z|x) for q (None without adaptive contrast); carries no gradient."""
        if not self.adaptive_contrast:
            return None
        return moment_contrast(q, self.contrast_draws, self.contrast_noise, generator)

    def log_ratio(self, model: DeepLatentModel, x_obs: Tensor, z: Tensor, contrast: Contrast | None = None
                  ) -> Tensor:
        """The estimate of log q(z|x) - log p(z) for zero-filled x (B, D) and z (K, B, Dz): (K, B).

        T(x, z), or with a contrast T(x, z̃) + log r(z|x) - log p(z). Gradient flows through z (to φ)
        and to ω; μ and σ of the contrast are constants."""
        if self.exact_log_ratio is not None:
            return self.exact_log_ratio(x_obs, z)
        if contrast is None:
            return self._t()(x_obs, z)
        return self._t()(x_obs, contrast.normalise(z)) + contrast.log_prob(z) - model.log_prior(z)

    def discriminator_logits(self, model: DeepLatentModel, x_obs: Tensor, z_q: Tensor,
                             contrast: Contrast | None = None, generator: torch.Generator | None = None
                             ) -> tuple[Tensor, Tensor]:
        """T on the q-draws z_q (detached here) and on as many draws of the other class: p(z), or with
        a contrast r(z|x), whose normalised draws are N(0, I). Gradient to ω only."""
        z_q = z_q.detach()
        if contrast is None:
            k, b, dz = z_q.shape
            z_p = model.sample_prior(k * b, generator).reshape(k, b, dz)
            return self._t()(x_obs, z_q), self._t()(x_obs, z_p)
        z_r = torch.randn(z_q.shape, generator=generator, dtype=z_q.dtype, device=z_q.device)
        return self._t()(x_obs, contrast.normalise(z_q)), self._t()(x_obs, z_r)

    def discriminator_loss(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                           generator: torch.Generator | None = None) -> Tensor:
        """T's loss (eq. 2.14) on fresh draws, without any θ/φ graph: for extra discriminator steps per
        batch (`default_optim[DISCRIMINATOR]["steps"]`) and for training T alone."""
        with torch.no_grad():
            q = model.encode(x, mask)
            z = q.sample(self.particles, generator)
            contrast = self.contrast(q, generator)
        return logistic_loss(*self.discriminator_logits(model, observed(x, mask), z, contrast, generator))

    # the objective ------------------------------------------------------------------------------
    def bound(self, log_w: Tensor) -> Tensor:
        """The per-point objective from estimated log-weights (K, B): eq. 2.15, averaged over K."""
        return log_w.mean(0)

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        # z reparameterised: carries φ's gradient into log p(x|z) and into the log-ratio estimate.
        draws = draw(model, x, self.particles, reparameterize=True, mask=mask, generator=generator)
        x_obs = observed(x, mask)
        with torch.no_grad():
            contrast = self.contrast(draws.q, generator)
        log_ratio = self.log_ratio(model, x_obs, draws.z, contrast)  # gradient to φ via z (and to ω)
        log_w = draws.log_lik - log_ratio  # estimated log p(x, z) - log q(z|x); gradient to θ and φ
        objective = self.bound(log_w)
        loss = -objective.mean()
        t_q, t_p = self.discriminator_logits(model, x_obs, draws.z, contrast, generator)  # gradient to ω only
        t_loss = logistic_loss(t_q, t_p)
        diagnostics = {
            "bound_estimate": objective.detach().mean(),  # an estimate: T is learnt, not exact
            "elbo_estimate": log_w.detach().mean(),
            "kl_estimate": log_ratio.detach().mean(),  # E_q[log q/p(z)], estimated
            "ess_fraction_estimate": effective_sample_size(log_w.detach()).mean() / log_w.shape[0],
            "discriminator_loss": t_loss.detach(),
            "discriminator_accuracy": classification_accuracy(t_q, t_p),
        }
        return MethodOutput({THETA: loss, PHI: loss, DISCRIMINATOR: t_loss}, diagnostics, log_w)


class IWAVB(AVB):
    """Importance weighted AVB, eq. 3.1-3.2 (default K = 5); K = 1 is AVB. Options as `avb`."""

    name = "iwavb"

    def __init__(self, particles: int = 5, discriminator_hidden: Sequence[int] | None = None,
                 discriminator_activation: str = "tanh", adaptive_contrast: bool = False,
                 contrast_draws: int = 32) -> None:
        super().__init__(particles, discriminator_hidden, discriminator_activation, adaptive_contrast,
                         contrast_draws)

    def bound(self, log_w: Tensor) -> Tensor:
        """log (1/K) Σ_k exp(log p(x|z_k) - T(x, z_k)) per data point (eq. 3.1)."""
        return log_mean_exp(log_w)
