"""The method interface. A training method is two (or more) updates that share one model: given a
batch it returns one loss per parameter group ("theta" for the decoder, "phi" for the encoder, and
any group the method owns itself), plus diagnostics. The trainer minimises each loss with respect to
its own group only, so a method never has to detach one group from another's loss; it only decides
which tensors are coefficients (importance weights are always detached)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from deepem.inference.numerics import effective_sample_size, log_mean_exp
from deepem.models.encoders import diagonal_gaussian
from deepem.models.lvm import DeepLatentModel

THETA = "theta"
PHI = "phi"


class IncompatibleModelError(ValueError):
    """A model that a method cannot train; the message names methods that can."""


@dataclass
class Particles:
    """K particles per data point with every log density a method needs, computed once.

    z carries gradient to φ when drawn by reparameterisation; log_prior and log_lik carry gradient to θ
    (and to φ through z); log_q carries gradient to φ through both z and q's parameters."""

    z: Tensor  # (K, B, Dz)
    log_q: Tensor  # (K, B)
    log_prior: Tensor  # (K, B)
    log_lik: Tensor  # (K, B)
    q_mean: Tensor  # (B, Dz)
    q_std: Tensor  # (B, Dz)

    @property
    def log_joint(self) -> Tensor:
        return self.log_prior + self.log_lik

    @property
    def log_w(self) -> Tensor:
        """log p(x, z) - log q(z | x)."""
        return self.log_joint - self.log_q


def draw_particles(model: DeepLatentModel, x: Tensor, k: int, reparameterize: bool = True,
                   stop_q_params: bool = False, generator: torch.Generator | None = None) -> Particles:
    """Draw z ~ q(z | x) K times and evaluate log q, log p(z), log p(x | z) in one batched pass.

    reparameterize=False detaches z (score-function and wake-phase methods).
    stop_q_params=True evaluates log q with q's mean and std detached, so log q depends on φ only
    through z: the form DReG and STL need."""
    mean, std = model.encoder(x)
    eps = torch.randn((k, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
    z = mean + std * eps
    if not reparameterize:
        z = z.detach()
    q = diagonal_gaussian(mean.detach(), std.detach()) if stop_q_params else diagonal_gaussian(mean, std)
    return Particles(z, q.log_prob(z), model.log_prior(z), model.log_likelihood(x, z), mean, std)


@dataclass
class MethodOutput:
    """Losses to minimise, keyed by parameter group; the same tensor may serve several groups."""

    losses: dict[str, Tensor]
    diagnostics: dict[str, float] = field(default_factory=dict)
    log_w: Tensor | None = None  # the batch's log-weights, for non-finite checks


def weight_diagnostics(log_w: Tensor) -> dict[str, float]:
    """Bound estimates and weight quality of a (K, B) log-weight tensor, as plain floats."""
    log_w = log_w.detach()
    k = log_w.shape[0]
    return {
        "elbo": float(log_w.mean()),
        "iw_bound": float(log_mean_exp(log_w).mean()),
        "ess_fraction": float(effective_sample_size(log_w).mean()) / k,
    }


class Method(nn.Module):
    """Base class. Subclasses set `name` and implement `forward(model, x) -> MethodOutput`.

    A method is an nn.Module so that its own parameters (a discriminator, a baseline network) and its
    state (an annealing coefficient, as a buffer) are saved in checkpoints with the model."""

    name: ClassVar[str] = ""
    #: parameter groups this method's losses update; the trainer builds one optimiser for each.
    loss_groups: ClassVar[tuple[str, ...]] = (THETA, PHI)

    def __init__(self, particles: int = 1) -> None:
        super().__init__()
        if particles < 1:
            raise ValueError(f"particles (K) must be >= 1, got {particles}")
        self.particles = particles

    def forward(self, model: DeepLatentModel, x: Tensor) -> MethodOutput:  # pragma: no cover
        raise NotImplementedError

    def bind(self, model: DeepLatentModel) -> None:
        """Check that `model` fits and build networks the method owns (before optimisers and checkpoints)."""

    def extra_parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups owned by the method itself (none by default)."""
        return {}

    def after_update(self) -> None:
        """Called after every optimisation step; annealing schedules advance here."""

    def after_epoch(self, epoch: int) -> None:
        """Called at the end of every epoch (0-based index of the epoch just finished)."""
