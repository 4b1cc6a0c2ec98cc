"""The discriminator T_ω(x, z) of adversarial variational Bayes (Mescheder et al. 2017; IWAVB,
Gómez-Sancho & Hernández-Lobato 2020, sec. 2.2), its logistic loss, and the adaptive contrast.

T_ω classifies pairs (x, z): z ~ q(z|x) labelled 1, z ~ p(z) labelled 0. Maximising eq. 2.14,
    E_{q(z|x)} log σ(T(x, z)) + E_{p(z)} log(1 - σ(T(x, z))),
gives T*(x, z) = log q(z|x) - log p(z), the log-ratio a density-free q cannot evaluate itself.

Adaptive contrast (Mescheder et al. 2017, sec. 3.3): when q is far from p(z) the log-ratio is large
and a classifier learns it slowly. Compare q instead with a Gaussian r(z|x) = N(μ(x), σ(x)^2) that has
q's mean and std, on normalised z̃ = (z - μ)/σ: T then estimates log q(z|x) - log r(z|x) (a ratio near
zero when q is near Gaussian), and log r(z|x) - log p(z) is added back in closed form. The identity
    log q - log p = (log q - log r) + (log r - log p)
holds for any r, so the moments need not be exact: for an implicit q they are Monte Carlo estimates
from a fixed set of extra draws (see `moment_contrast`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepem.inference.distributions import DiagonalGaussian, Implicit, LatentDistribution
from deepem.models.networks import mlp

DISCRIMINATOR = "discriminator"
#: widths of T's hidden layers when the encoder has none to copy (a linear T cannot represent the
#: log-ratio of two Gaussians, which is quadratic in z)
DEFAULT_HIDDEN = (200, 200)
#: floor of the contrast's std: a q that collapses in one latent must not divide by zero
MIN_CONTRAST_STD = 1e-5


class Discriminator(nn.Module):
    """T_ω(x, z): an MLP on concat(x, z) with one output, applied to every particle in one call."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = DEFAULT_HIDDEN,
                 activation: str = "tanh") -> None:
        super().__init__()
        self.net = mlp(data_dim + latent_dim, hidden, 1, activation)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """T for x (B, D) and z (K, B, Dz): (K, B)."""
        return self.net(torch.cat([x.expand(z.shape[0], *x.shape), z], dim=-1)).squeeze(-1)


def hidden_widths(module: nn.Module) -> list[int]:
    """The hidden widths of an `mlp` (the out_features of every linear layer but the last); [] for a
    module without one."""
    net = getattr(module, "net", None)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)] if isinstance(net, nn.Module) else []
    return [m.out_features for m in linears[:-1]]


def logistic_loss(t_q: Tensor, t_p: Tensor) -> Tensor:
    """Minus eq. 2.14 averaged over draws: -log σ(T) on q-draws, -log(1 - σ(T)) on contrast draws.
    -log σ(t) = softplus(-t) and -log(1 - σ(t)) = softplus(t), stable for any t."""
    return F.softplus(-t_q).mean() + F.softplus(t_p).mean()


def classification_accuracy(t_q: Tensor, t_p: Tensor) -> Tensor:
    """The fraction of draws T classifies right (T > 0 on q-draws, T < 0 on contrast draws), with both
    classes weighted equally; 0.5 is chance. Detached, 0-dim."""
    with torch.no_grad():
        return 0.5 * ((t_q > 0).to(t_q.dtype).mean() + (t_p < 0).to(t_p.dtype).mean())


@dataclass
class Contrast:
    """The adaptive contrast r(z|x) = N(mean, std^2) per data point, mean and std (B, Dz) detached."""

    mean: Tensor
    std: Tensor

    def normalise(self, z: Tensor) -> Tensor:
        """z̃ = (z - μ)/σ for z (K, B, Dz); carries z's gradient (μ and σ carry none)."""
        return (z - self.mean) / self.std

    def log_prob(self, z: Tensor) -> Tensor:
        """log r(z|x) for z (K, B, Dz): (K, B)."""
        return DiagonalGaussian(self.mean, self.std).log_prob(z)


def contrast_noise(draws: int, noise_dim: int, seed: int = 0) -> Tensor:
    """Fixed noise ε_1..ε_draws (draws, noise_dim) for the contrast's moments, standardised per
    dimension (sample mean 0, sample std 1), so that the moments are exact for q = μ + σ ⊙ ε."""
    noise = torch.randn(draws, noise_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (noise - noise.mean(0)) / noise.std(0)


def moment_contrast(q: LatentDistribution, draws: int, noise: Tensor | None = None,
                    generator: torch.Generator | None = None) -> Contrast:
    """r(z|x) with q's mean and std: exact for a diagonal Gaussian q, otherwise estimated from `draws`
    draws per data point.

    For an implicit q, pass `noise` (draws, noise_dim): the same ε for every data point and every step,
    so that r(z|x) is a fixed function of x and φ. Fresh draws each step would make r a random function
    whose Monte Carlo error (about sqrt(2 Dz / draws) nats in log r) T cannot learn, since T sees z̃
    but not r; with fixed noise T learns log q/r for this one r, and the identity above is exact.

    Gradient: none. μ and σ are held fixed for the step, so the estimated log-ratio depends on φ only
    through z. Letting φ's gradient flow through μ and σ would add, at fixed z, the derivative of
    log q(z|x) along q's location and scale, a score term whose expectation under q is zero (for the
    optimal T): it would add variance, not signal. This is AVB's own argument for ignoring ∇φ T*."""
    with torch.no_grad():
        if isinstance(q, DiagonalGaussian):
            return Contrast(q.loc.detach(), q.std.detach())
        if isinstance(q, Implicit) and noise is not None and noise.shape[-1] == q.noise_dim:
            z = q.transform(noise[:, None, :].expand(-1, q.batch, -1))
        else:
            if draws < 2:
                raise ValueError(f"adaptive contrast needs at least 2 draws to estimate a std, got {draws}")
            z = q.sample(draws, generator)
        return Contrast(z.mean(0), z.std(0).clamp_min(MIN_CONTRAST_STD))
