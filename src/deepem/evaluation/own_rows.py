"""Imputation and scoring of any rows, not only a run's own splits: new rows, a user's file, one row.

Both go over the rows in chunks of `batch_size` (memory bounded by the chunk, particles are chunked
inside), report each finished chunk to `progress`, and draw from one generator seeded with `seed` in
row order, the way `evaluation.imputation.impute` and the log-likelihood estimators do, so the numbers
are those of `impute` / `observed_log_likelihood` / `iw_log_likelihood` on the same rows and seed.

    impute_rows:  single imputation E[x_m | x_o] by the self-normalised IS mean with K particles, and
                  M draws by sampling importance resampling (see evaluation/imputation.py).
    score_rows:   per-row IW bound of log p(x) (complete rows, no mask) or log p(x_o) (with a mask),
                  with K and the proposal recorded.

Values are in the model's units: whoever standardised the rows converts the results back."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from deepem.evaluation.imputation import PROPOSALS, ImputationResult, impute
from deepem.evaluation.loglik import iw_log_likelihood_batch, require_q_density
from deepem.evaluation.observed_loglik import observed_log_likelihood_batch
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.models.likelihoods import observed
from deepem.models.lvm import DeepLatentModel

#: called after each chunk with the number of rows it held
Progress = Callable[[int], None]


def _check(data: Tensor, mask: Tensor | None, particles: int, proposal: str, batch_size: int) -> None:
    if proposal not in PROPOSALS:
        raise ValueError(f"unknown proposal {proposal!r}; choose one of {', '.join(PROPOSALS)}")
    if particles < 1:
        raise ValueError(f"particles must be >= 1, got {particles}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if data.dim() != 2:
        raise ValueError(f"rows must be a (N, D) tensor, got shape {tuple(data.shape)}")
    if mask is not None and (mask.shape != data.shape or mask.dtype != torch.bool):
        raise ValueError(f"the mask must be a bool tensor shaped like the rows {tuple(data.shape)}, got "
                         f"{mask.dtype} {tuple(mask.shape)}")


@torch.no_grad()
def impute_rows(model: DeepLatentModel, data: Tensor, mask: Tensor, particles: int = 1000, draws: int = 0,
                proposal: str = "zero-filled", seed: int = 0, batch_size: int = 100,
                chunk_particles: int | None = None, progress: Progress | None = None) -> ImputationResult:
    """Fill the missing entries (mask False) of `data` (N, D; missing entries may hold anything, NaN
    included). Observed entries come back exactly as given. `draws` > 0 adds (draws, N, D) multiple
    imputations. proposal: "zero-filled" (q(z | x̃0), what miwae trains) or "completed" (q(z | x̆),
    what miss-IWEM trains). Seeded; the same numbers as `impute` with the same arguments."""
    _check(data, mask, particles, proposal, batch_size)
    if draws < 0:
        raise ValueError(f"draws must be >= 0, got {draws}")
    require_q_density(model)
    if data.shape[0] == 0:  # (impute walks batches of rows; no rows, nothing to fill)
        settings = {"particles": particles, "seed": seed, "draws": draws, "proposal": proposal}
        return ImputationResult(data.new_zeros(data.shape), None, None, 0, f"self-normalised IS mean, K={particles}",
                                settings)
    return impute(model, data, mask, particles, draws, batch_size=batch_size, seed=seed,
                  chunk_particles=chunk_particles, proposal=proposal, progress=progress)


@torch.no_grad()
def score_rows(model: DeepLatentModel, data: Tensor, mask: Tensor | None = None, particles: int = 1000,
               proposal: str = "completed", seed: int = 0, batch_size: int = 100,
               chunk_particles: int | None = None, progress: Progress | None = None) -> LogLikelihoodEstimate:
    """Per-row IW bound of log p(x), or of log p(x_o) with a mask (True = observed), K = `particles`.
    Without a mask the proposal is q(z | x) (`iw_log_likelihood`); with one, `proposal` picks
    q(z | x̆) ("completed") or q(z | x̃0) ("zero-filled") as `observed_log_likelihood` does."""
    _check(data, mask, particles, proposal, batch_size)
    require_q_density(model)
    model.eval()
    p = next(model.parameters())
    generator = torch.Generator(device=p.device).manual_seed(seed)
    parts = []
    for start in range(0, data.shape[0], batch_size):
        x = data[start:start + batch_size].to(p.device, p.dtype)
        if mask is None:
            parts.append(iw_log_likelihood_batch(model, x, particles, chunk_particles, generator))
        else:
            m = mask[start:start + batch_size].to(p.device)
            parts.append(observed_log_likelihood_batch(model, observed(x, m), m, particles, proposal,
                                                       chunk_particles, generator))
        if progress is not None:
            progress(x.shape[0])
    what = "log p(x)" if mask is None else f"log p(x_o), q from {proposal} input"
    settings = {"particles": particles, "seed": seed, "proposal": None if mask is None else proposal}
    per_row = LogLikelihoodEstimate.concat(parts) if parts else torch.zeros(0, dtype=torch.float64)
    return LogLikelihoodEstimate(per_row, f"IWAE bound of {what}, K={particles}", settings)
