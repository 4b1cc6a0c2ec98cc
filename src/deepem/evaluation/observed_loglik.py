"""The importance-weighted estimate of log p(x_o) for incomplete data with either proposal of the
missing-data methods: MIWAE's q(z | x̃0) (missing entries zero-filled: what `iw_log_likelihood` with a
mask computes) or miss-IWEM's q(z | x̆), x̆ = x completed once per point by z̆ ~ q(z | x̃0),
x̆_m ~ p(x_m | z̆) (IWEM paper, section 4.1).

    log p̂(x_o) = log (1/K) sum_k p(x_o, z_k) / q(z_k | x̃),   z_k ~ q(z | x̃).

For any fixed encoder input x̃ it is a stochastic lower bound of log p(x_o) that tends to it as K grows.
A model trained by miss-IWEM fits q(z | x̆), not q(z | x̃0): validate it with proposal="completed"."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from deepem.evaluation.driver import Estimator, Progress, estimate
from deepem.evaluation.loglik import iw_estimate, require_q_density
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.evaluation.settings import EstimatorSettingError, ObservedIWSettings
from deepem.evaluation.sharding import Shard
from deepem.models.completion import completion
from deepem.models.likelihoods import observed
from deepem.models.lvm import DeepLatentModel


@torch.no_grad()
def observed_log_likelihood_batch(model: DeepLatentModel, x: Tensor, mask: Tensor, particles: int,
                                  proposal: str = "completed", chunk_particles: int | None = None,
                                  generator: torch.Generator | None = None, replay: bool = False
                                  ) -> Tensor | None:
    """(B,) IW estimates of log p(x_o) for one batch, particles drawn in chunks (replay: the draws
    only, see sharding.py)."""
    require_q_density(model)
    x = observed(x, mask)
    q = model.encode(x, mask) if proposal == "zero-filled" else model.encode(completion(model, x, mask, generator))
    return iw_estimate(model, x, q, particles, chunk_particles, generator, mask, replay=replay)


class ObservedIWEstimator(Estimator):
    """`iw-observed`: the IW estimate of log p(x_o) on incomplete data (a mask is required)."""

    name = "iw-observed"
    Settings = ObservedIWSettings
    observed_data = True

    def check(self, model: DeepLatentModel, data: Tensor, mask: Tensor | None) -> None:
        if mask is None:
            raise EstimatorSettingError("the iw-observed estimator needs the observed-data mask of incomplete "
                                        "data; estimate complete data with the iw estimator")
        require_q_density(model)

    def batch(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None, generator: torch.Generator,
              replay: bool, progress: Progress | None) -> dict[str, Tensor] | None:
        s = self.settings
        value = observed_log_likelihood_batch(model, x, mask, s.particles, s.proposal, s.chunk_particles,
                                              generator, replay)
        return None if replay else {"log_likelihood": value}

    def label(self) -> str:
        s = self.settings
        return f"IWAE bound of log p(x_o), K={s.particles}, q from {s.proposal} input"

    def record(self, columns: dict[str, Tensor], seed: int, batch_size: int) -> dict:
        return {"particles": self.settings.particles, "seed": seed, "proposal": self.settings.proposal}

    def tag(self) -> str:
        # the names `iw --observed` always had (the data's "-observed" follows the split); the completed
        # proposal, another estimate, says so
        proposal = self.settings.proposal
        name = "iw" if self.name == ObservedIWEstimator.name else self.name
        return f"{name}-k{self.settings.particles}" + ("" if proposal == "zero-filled" else f"-{proposal}")


def observed_log_likelihood(model: DeepLatentModel, data: Tensor, mask: Tensor,
                            particles: int = ObservedIWSettings.particles, proposal: str = "completed",
                            batch_size: int = 100, seed: int = 0, chunk_particles: int | None = None,
                            progress: Callable[[int], None] | None = None,
                            shard: Shard | None = None) -> LogLikelihoodEstimate:
    """Seeded IW estimates of log p(x_o) for every row of `data` (mask True = observed; missing entries
    may hold anything), with the proposal "completed" (q(z | x̆)) or "zero-filled" (q(z | x̃0))."""
    estimator = ObservedIWEstimator(particles=particles, proposal=proposal, chunk_particles=chunk_particles)
    return estimate(estimator, model, data, mask, batch_size=batch_size, seed=seed, progress=progress,
                    shard=shard)
