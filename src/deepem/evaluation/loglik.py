"""The importance-weighted estimate of log p(x) (Burda et al. 2015) with any number of particles.

Particles are drawn in chunks and folded into a running logsumexp, so memory is set by the chunk
size, not by K: K = 5000 on the full test set runs in a few tens of MB."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from deepem.evaluation.driver import Estimator, Progress, estimate
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.evaluation.settings import IWSettings
from deepem.evaluation.sharding import Shard
from deepem.inference.distributions import Q_DENSITY, DensityUnavailableError, LatentDistribution
from deepem.inference.numerics import running_logsumexp
from deepem.models.lvm import DeepLatentModel

#: floats of the largest activation per chunk (particles x points x widest layer): 4 MB in float32, so
#: the element-wise passes of the likelihood stay in cache (larger chunks are slower on CPU; the
#: measurement: docs/speed.md, "Thresholds in the code").
DEFAULT_CHUNK_FLOATS = 1_000_000


def _widest_layer(model: DeepLatentModel) -> int:
    """Floats per particle and point of the decoder's largest activation: its widest linear layer, or
    what the decoder declares (`widest_activation`: a convolutional decoder's channels x pixels)."""
    widths = [model.data_dim, model.latent_dim, getattr(model.decoder, "widest_activation", 0)]
    widths += [m.out_features for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    return max(widths)


def require_q_density(model: DeepLatentModel) -> None:
    """Refuse, with the way out, a model whose q(z | x) has no density (an implicit encoder)."""
    if Q_DENSITY not in model.capabilities():
        raise DensityUnavailableError(
            f"the importance-weighted estimate needs log q(z|x), and this model's encoder "
            f"({type(model.encoder).__name__}) is implicit: it has no density. Estimate log p(x) with AIS "
            "from the prior instead (deepem evaluate RUN --estimator ais --ais-initial prior)"
        )


@torch.no_grad()
def iw_log_likelihood_batch(model: DeepLatentModel, x: Tensor, particles: int,
                            chunk_particles: int | None = None,
                            generator: torch.Generator | None = None, mask: Tensor | None = None) -> Tensor:
    """log (1/K) sum_k p(x_obs, z_k)/q(z_k | x_obs), z_k ~ q, for one batch x: (B,) values."""
    require_q_density(model)
    return iw_estimate(model, x, model.encode(x, mask), particles, chunk_particles, generator, mask)


@torch.no_grad()
def iw_estimate(model: DeepLatentModel, x: Tensor, q: LatentDistribution, particles: int,
                chunk_particles: int | None = None, generator: torch.Generator | None = None,
                mask: Tensor | None = None, replay: bool = False) -> Tensor | None:
    """log (1/K) sum_k p(x_obs, z_k)/q(z_k), z_k ~ q, for one batch and any proposal q with a density:
    particles in chunks folded into a running logsumexp, so memory does not grow with K.
    replay=True: only draw the particles (advancing `generator` as the estimate would), return None."""
    if chunk_particles is None:
        chunk_particles = max(1, DEFAULT_CHUNK_FLOATS // (x.shape[0] * _widest_layer(model)))
    total = None
    done = 0
    while done < particles:
        k = min(chunk_particles, particles - done)
        z = q.sample(k, generator)
        if not replay:
            total = running_logsumexp(total, model.log_joint(x, z, mask) - q.log_prob(z))
        done += k
    return None if replay else total - math.log(particles)


class IWEstimator(Estimator):
    """The IWAE-K estimate (Burda et al. 2015): a stochastic lower bound on log p(x) whose bias shrinks
    as K grows. With an observed-data mask (True = observed) q(z | x) sees the mask and the estimate is
    of log p(x_obs) (as iw-observed with the zero-filled proposal)."""

    name = "iw"
    Settings = IWSettings

    def check(self, model: DeepLatentModel, data: Tensor, mask: Tensor | None) -> None:
        require_q_density(model)

    @torch.no_grad()
    def batch(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None, generator: torch.Generator,
              replay: bool, progress: Progress | None) -> dict[str, Tensor] | None:
        s = self.settings
        value = iw_estimate(model, x, model.encode(x, mask), s.particles, s.chunk_particles, generator, mask,
                            replay=replay)
        return None if replay else {"log_likelihood": value}

    def label(self) -> str:
        return f"IWAE bound, K={self.settings.particles}"

    def tag(self) -> str:
        return f"{self.name}-k{self.settings.particles}"  # the chunk size does not change the estimate

    def record(self, columns: dict[str, Tensor], seed: int, batch_size: int) -> dict:
        return {"particles": self.settings.particles, "seed": seed}


def iw_log_likelihood(model: DeepLatentModel, data: Tensor, particles: int = IWSettings.particles,
                      batch_size: int = 100, seed: int = 0, chunk_particles: int | None = None,
                      progress: Callable[[int], None] | None = None,
                      mask: Tensor | None = None, shard: Shard | None = None) -> LogLikelihoodEstimate:
    """The IWAE-K estimate of log p(x) for every row of `data` (the `iw` estimator through the batched
    driver, evaluation/driver.py), seeded so that it is reproducible. With an observed-data mask (True =
    observed) it estimates log p(x_obs); shard: this rank's part of a sharded evaluation."""
    return estimate(IWEstimator(particles=particles, chunk_particles=chunk_particles), model, data, mask,
                    batch_size=batch_size, seed=seed, progress=progress, shard=shard)
