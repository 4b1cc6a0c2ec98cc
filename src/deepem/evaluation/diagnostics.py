"""Posterior-collapse diagnostics of the encoder (Burda et al. 2015; REM Fig. 2): active units (in
total and per stochastic layer) and the KL divergence of q(z | x) to the prior.

KL to the prior is in closed form where the prior offers one (`prior.kl_from`: a diagonal Gaussian q
against N(0, I), a factorised Bernoulli q against a Bernoulli prior). Otherwise (two stochastic layers:
q(z1|x) q(z2|z1) against p(z2) p(z1|z2)) it is a Monte Carlo estimate, the mean of log q(z|x) - log p(z)
over KL_DRAWS draws z ~ q per data point, seeded; `kl_estimator` names which one a model gets. A q
without a density (implicit) gives NaN: log q cannot be evaluated.

Every Monte Carlo draw here comes from a generator the caller passes (or one seeded 0), never from the
global RNG: a diagnostic of the same model and data is the same number whatever ran before it."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from deepem.inference.distributions import Q_DENSITY, Implicit, LatentDistribution
from deepem.models.hierarchical import split_layers
from deepem.models.lvm import DeepLatentModel

#: draws per data point of the Monte Carlo KL estimate (when the prior has no closed form)
KL_DRAWS = 64


def _generator(model: DeepLatentModel, generator: torch.Generator | None, seed: int) -> torch.Generator:
    """`generator`, or a new one on the model's device seeded by `seed`."""
    if generator is not None:
        return generator
    return torch.Generator(device=next(model.parameters()).device).manual_seed(seed)


def distribution_mean(q: LatentDistribution, generator: torch.Generator) -> Tensor:
    """E_q[z] per point: q's own mean where it has one in closed form; for an implicit q (a sampler only)
    the Monte Carlo mean of its MEAN_DRAWS draws, drawn from `generator`."""
    if isinstance(q, Implicit):
        return q.sample(q.MEAN_DRAWS, generator).mean(0)
    return q.mean


@torch.no_grad()
def encoder_means(model: DeepLatentModel, data: Tensor, batch_size: int = 1000, mask: Tensor | None = None,
                  generator: torch.Generator | None = None, seed: int = 0) -> Tensor:
    """E_q[z | x] for every row: exact for Gaussian and Bernoulli q, a Monte Carlo mean for an implicit q
    whose draws come from `generator` (None: one seeded by `seed`)."""
    p = next(model.parameters())
    generator = _generator(model, generator, seed)
    parts = []
    for i in range(0, data.shape[0], batch_size):
        m = None if mask is None else mask[i:i + batch_size].to(p.device)
        parts.append(distribution_mean(model.encode(data[i:i + batch_size].to(p.device, p.dtype), m), generator))
    return torch.cat(parts)


def active_units(model: DeepLatentModel, data: Tensor, threshold: float = 0.01,
                 means: Tensor | None = None, seed: int = 0) -> int:
    """Latents u whose posterior mean varies over the data: Cov_x(E_q[z_u]) > threshold (the means of
    an implicit q drawn with `seed`, when not given)."""
    means = encoder_means(model, data, seed=seed) if means is None else means
    return int((means.var(dim=0, unbiased=True) > threshold).sum())


def active_units_per_layer(model: DeepLatentModel, data: Tensor, threshold: float = 0.01,
                           means: Tensor | None = None, seed: int = 0) -> list[int]:
    """Active units of each stochastic layer, in the order of `model.latent_layers` (one entry for a
    model with one layer). For a chained q the means are its mean path (see ChainedGaussian.mean)."""
    means = encoder_means(model, data, seed=seed) if means is None else means
    active = means.var(dim=0, unbiased=True) > threshold
    sizes = getattr(model, "latent_layers", (means.shape[-1],))
    return [int(block.sum()) for block in split_layers(active, sizes)]


def kl_estimator(model: DeepLatentModel, draws: int = KL_DRAWS) -> str:
    """How `kl_to_prior` computes KL for this model: "closed form", "Monte Carlo, N draws per point", or
    "none (q has no density)"."""
    if Q_DENSITY not in model.capabilities():
        return "none (q has no density)"
    if hasattr(model.prior, "kl_from"):
        return "closed form"
    return f"Monte Carlo, {draws} draws per point"


@torch.no_grad()
def kl_to_prior(model: DeepLatentModel, data: Tensor, batch_size: int = 1000, mask: Tensor | None = None,
                draws: int = KL_DRAWS, seed: int = 0, generator: torch.Generator | None = None) -> float:
    """Average over data of KL(q(z | x) || p(z)): closed form where the prior has one, else a Monte Carlo
    estimate from `draws` draws per point from `generator` (None: one seeded by `seed`; see the module
    notes and `kl_estimator`); NaN for a q without a density (implicit)."""
    if Q_DENSITY not in model.capabilities():
        return math.nan
    p = next(model.parameters())
    generator = _generator(model, generator, seed)
    closed_form = hasattr(model.prior, "kl_from")
    total = 0.0
    for i in range(0, data.shape[0], batch_size):
        m = None if mask is None else mask[i:i + batch_size].to(p.device)
        q = model.encode(data[i:i + batch_size].to(p.device, p.dtype), m)
        if closed_form:
            total += float(model.prior.kl_from(q).sum())
        else:
            z = q.sample(draws, generator)
            total += float((q.log_prob(z) - model.log_prior(z)).mean(0).sum())
    return total / data.shape[0]
