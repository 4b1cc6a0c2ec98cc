"""The importance-weighted estimate of log p(x_o) for incomplete data with either proposal of the
missing-data methods: MIWAE's q(z | x̃0) (missing entries zero-filled: what `iw_log_likelihood` with a
mask computes) or miss-IWEM's q(z | x̆), x̆ = x completed once per point by z̆ ~ q(z | x̃0),
x̆_m ~ p(x_m | z̆) (IWEM paper, section 4.1).

    log p̂(x_o) = log (1/K) sum_k p(x_o, z_k) / q(z_k | x̃),   z_k ~ q(z | x̃).

For any fixed encoder input x̃ it is a stochastic lower bound of log p(x_o) that tends to it as K grows.
A model trained by miss-IWEM fits q(z | x̆), not q(z | x̃0): validate it with proposal="completed"."""

from __future__ import annotations

import torch
from torch import Tensor

from deepem.evaluation.imputation import PROPOSALS
from deepem.evaluation.loglik import iw_estimate, require_q_density
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.models.completion import completion
from deepem.models.likelihoods import observed
from deepem.models.lvm import DeepLatentModel


@torch.no_grad()
def observed_log_likelihood_batch(model: DeepLatentModel, x: Tensor, mask: Tensor, particles: int,
                                  proposal: str = "completed", chunk_particles: int | None = None,
                                  generator: torch.Generator | None = None) -> Tensor:
    """(B,) IW estimates of log p(x_o) for one batch, particles drawn in chunks."""
    require_q_density(model)
    q = model.encode(x, mask) if proposal == "zero-filled" else model.encode(completion(model, x, mask, generator))
    return iw_estimate(model, x, q, particles, chunk_particles, generator, mask)


def observed_log_likelihood(model: DeepLatentModel, data: Tensor, mask: Tensor, particles: int = 5000,
                            proposal: str = "completed", batch_size: int = 100, seed: int = 0,
                            chunk_particles: int | None = None) -> LogLikelihoodEstimate:
    """Seeded IW estimates of log p(x_o) for every row of `data` (mask True = observed; missing entries
    may hold anything), with the proposal "completed" (q(z | x̆)) or "zero-filled" (q(z | x̃0))."""
    if proposal not in PROPOSALS:
        raise ValueError(f"unknown proposal {proposal!r}; choose one of {', '.join(PROPOSALS)}")
    if particles < 1:
        raise ValueError(f"particles must be >= 1, got {particles}")
    model.eval()
    p = next(model.parameters())
    generator = torch.Generator(device=p.device).manual_seed(seed)
    parts = []
    for start in range(0, data.shape[0], batch_size):
        m = mask[start:start + batch_size].to(p.device)
        x = observed(data[start:start + batch_size].to(p.device, p.dtype), m)
        parts.append(observed_log_likelihood_batch(model, x, m, particles, proposal, chunk_particles, generator))
    return LogLikelihoodEstimate(LogLikelihoodEstimate.concat(parts),
                                 f"IWAE bound of log p(x_o), K={particles}, q from {proposal} input",
                                 {"particles": particles, "seed": seed, "proposal": proposal})
