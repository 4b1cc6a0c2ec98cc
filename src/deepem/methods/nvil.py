"""NVIL (Mnih & Gregor 2014, "Neural variational inference and learning in belief networks"; review
004, sec. 4.2): the ELBO with a score-function φ-gradient whose learning signal is centred and scaled.

With l = log p(x, h) - log q(h | x), h ~ q (K samples, averaged; the paper uses K = 1):
    θ: ∇θ log p(x, h)                                    (the ELBO's θ-gradient)
    φ: ((l - C_ψ(x) - c) / max(1, σ)) ∇φ log q(h | x)    (Alg. 1: the REINFORCE term of the ELBO)
    ψ: minimise (l - c - C_ψ(x))^2                       (the input-dependent baseline, its own group)
c and σ^2 are running averages (decay `decay`, 0.8 in the paper) of the mean and variance of l - C_ψ(x)
over batches. The term ∇φ l = -∇φ log q of the ELBO's gradient has expectation zero and is left out,
as in the paper. Centring by anything that does not depend on h leaves the estimator unbiased; dividing
by max(1, σ) scales the step, not its direction (turn it off with normalise=False).

c and σ^2 are buffers (saved in checkpoints) and change only after an update (`after_update`), so
every forward pass within a step uses the same ones."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepem.inference.capabilities import Q_DENSITY
from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw, weight_diagnostics
from deepem.models.likelihoods import observed
from deepem.models.lvm import DeepLatentModel
from deepem.models.networks import mlp

BASELINE = "baseline"


def nvil_losses(log_joint: Tensor, log_q: Tensor, baseline: Tensor, centre: Tensor, scale: Tensor
                ) -> dict[str, Tensor]:
    """NVIL's three losses from particles drawn without a pathwise gradient: log_joint and log_q (K, B),
    the baseline C_ψ(x) (B,), the running centre c and scale max(1, σ) (0-dim)."""
    log_w = log_joint - log_q
    residual = log_w.detach() - centre - baseline  # what the baseline should predict away: (K, B)
    signal = (residual / scale).detach()  # a coefficient of the score term
    return {
        THETA: -log_joint.mean(),
        PHI: -(signal * log_q).mean(),
        BASELINE: 0.5 * residual.pow(2).mean(),  # gradient to ψ only
    }


class NVIL(Method):
    """NVIL. Options: particles (default 1, as in the paper), baseline_hidden (width of the baseline
    MLP's one tanh layer, default 100 as in the paper; 0 = no input-dependent baseline), decay of the
    running mean and variance (default 0.8), normalise (divide by max(1, running std), default True)."""

    name = "nvil"
    requires = frozenset({Q_DENSITY})
    loss_groups = (THETA, PHI, BASELINE)

    def __init__(self, particles: int = 1, baseline_hidden: int = 100, decay: float = 0.8,
                 normalise: bool = True) -> None:
        super().__init__(particles)
        if baseline_hidden < 0:
            raise ValueError(f"baseline_hidden must be >= 0 (0: no baseline network), got {baseline_hidden}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.baseline_hidden = baseline_hidden
        self.decay = decay
        self.normalise = normalise
        self.baseline_net: nn.Module | None = None
        self.register_buffer("signal_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("signal_var", torch.ones((), dtype=torch.float64))
        self._pending: tuple[Tensor, Tensor] | None = None

    def bind(self, model: DeepLatentModel) -> None:
        """Build the baseline C_ψ(x) sized to the model's data (x -> hidden tanh -> 1)."""
        super().bind(model)
        if self.baseline_net is None and self.baseline_hidden > 0:
            p = next(model.parameters())
            self.baseline_net = mlp(model.data_dim, [self.baseline_hidden], 1, "tanh").to(p.device, p.dtype)

    def extra_parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {BASELINE: [] if self.baseline_net is None else list(self.baseline_net.parameters())}

    def baseline(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """C_ψ(x) per data point (B,); zero without a baseline network."""
        if self.baseline_net is None:
            return x.new_zeros(x.shape[0])
        return self.baseline_net(observed(x, mask)).squeeze(-1)

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        # h detached: log_joint carries gradient to θ only, log_q to φ through q's parameters.
        draws = draw(model, x, self.particles, reparameterize=False, mask=mask, generator=generator)
        log_w = draws.log_w
        c_x = self.baseline(x, mask)  # gradient to ψ only
        centre = self.signal_mean.to(log_w.dtype)
        scale = self.signal_var.to(log_w.dtype).sqrt().clamp_min(1.0) if self.normalise else centre.new_ones(())
        losses = nvil_losses(draws.log_joint, draws.log_q, c_x, centre, scale)
        with torch.no_grad():
            centred = log_w - c_x
            self._pending = (centred.mean().double(), centred.var(unbiased=False).double())
        diagnostics = weight_diagnostics(log_w)
        diagnostics.update(signal_mean=self.signal_mean.clone(), signal_std=self.signal_var.sqrt(),
                           baseline_loss=losses[BASELINE].detach())
        return MethodOutput(losses, diagnostics, log_w)

    def after_update(self) -> None:
        """Move the running mean and variance of l - C(x) toward the last batch's (Alg. 1)."""
        if self._pending is None:
            return
        mean, var = self._pending
        self.signal_mean.mul_(self.decay).add_((1 - self.decay) * mean)
        self.signal_var.mul_(self.decay).add_((1 - self.decay) * var)
        self._pending = None
