"""Imputation of missing entries with a trained model (Mattei & Frellsen 2019, section 3; IWEM paper,
Table 4 and Figure 5), by importance sampling with the model's own proposal q(z | x̃):

    weights      w_k = p(x_o, z_k) / q(z_k | x̃),  z_k ~ q(z | x̃),   w̄_k = w_k / sum_k' w_k'
    single       E[x_m | x_o] ≈ sum_k w̄_k E[x_m | z_k]   (self-normalised IS, with the likelihood's mean)
    multiple     M draws by sampling importance resampling: z ~ Categorical(w̄) over the K particles,
                 then x_m ~ p(x_m | z); as K grows each draw is distributed as p(x_m | x_o).

The encoder's input x̃ is, with proposal="zero-filled", x with its missing entries set to 0 (MIWAE's
q(z | x̃0), what miwae trains); with proposal="completed", x̆ = (x_o, x̆_m) completed once per point by
z̆ ~ q(z | x̃0), x̆_m ~ p(x_m | z̆) (section 4.1 of the IWEM paper: the input miss-IWEM trains q on).
Both give consistent estimates; they differ in variance.

Particles are processed in chunks, so memory does not grow with K: the single imputation keeps a
running logsumexp of the weights and a running weighted mean rescaled to it; for the M resampled
particles each chunk proposes M draws by its own weights and a draw moves to the chunk's proposal with
probability (chunk's total weight) / (total weight so far) (weighted reservoir sampling), which leaves
every draw exactly Categorical(w̄) over all K particles. Everything is seeded.

`ImputationResult.summary()` is a JSON-ready dict (mse over missing entries, their number, the
estimator and its settings); the baselines of `evaluation.imputation_baselines` return the same."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from deepem.evaluation.loglik import DEFAULT_CHUNK_FLOATS, _widest_layer, require_q_density
from deepem.evaluation.settings import PROPOSALS
from deepem.inference.numerics import running_logsumexp
from deepem.models.completion import completion
from deepem.models.likelihoods import observed
from deepem.models.lvm import DeepLatentModel

#: the encoder input of the importance-sampling proposal (see the module notes)


@dataclass
class ImputationResult:
    """Imputed data (observed entries as given, missing ones filled) and, when the complete data are
    known, the error over missing entries.

    imputed: (N, D) single imputation; draws: (M, N, D) multiple imputations or None;
    mse: mean squared error of `imputed` over the missing entries (None without complete data);
    n_missing: number of missing entries; estimator: how the values were made."""

    imputed: Tensor
    draws: Tensor | None
    mse: float | None
    n_missing: int
    estimator: str
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: mse, n_missing, estimator, settings (and n_draws when there are draws)."""
        out: dict[str, Any] = {"mse": self.mse, "n_missing": self.n_missing, "estimator": self.estimator,
                               **self.settings}
        if self.draws is not None:
            out["n_draws"] = int(self.draws.shape[0])
        return out


def missing_mse(imputed: Tensor, complete: Tensor, mask: Tensor) -> tuple[float, int]:
    """(mean squared error over the missing entries, their number); nan when nothing is missing."""
    missing = ~mask
    n = int(missing.sum())
    if n == 0:
        return float("nan"), 0
    diff = (imputed.to(torch.float64) - complete.to(torch.float64))[missing]
    return float(diff.pow(2).mean()), n


def fill_missing(x: Tensor, mask: Tensor, values: Tensor) -> Tensor:
    """x's observed entries with `values` (broadcast against x) in the missing ones."""
    return torch.where(mask, x, values)


@torch.no_grad()
def impute_batch(model: DeepLatentModel, x: Tensor, mask: Tensor, particles: int, draws: int = 0,
                 chunk_particles: int | None = None, generator: torch.Generator | None = None,
                 proposal: str = "zero-filled") -> tuple[Tensor, Tensor | None]:
    """Single (B, D) and multiple (draws, B, D) imputations of one batch (see the module notes)."""
    require_q_density(model)
    if chunk_particles is None:
        chunk_particles = max(1, DEFAULT_CHUNK_FLOATS // (x.shape[0] * _widest_layer(model)))
    # q(z | x̃): the encoder reads observed entries and zeros, or the completion x̆ (a constant)
    q = model.encode(x, mask) if proposal == "zero-filled" else model.encode(completion(model, x, mask, generator))
    log_total: Tensor | None = None  # running logsumexp_k log w_k, (B,)
    mean: Tensor | None = None  # running sum_k exp(log w_k - log_total) E[x | z_k], (B, D)
    chosen_z: Tensor | None = None  # the M resampled particles so far, (M, B, Dz)
    done = 0
    while done < particles:
        k = min(chunk_particles, particles - done)
        z = q.sample(k, generator)  # (k, B, Dz)
        out = model.decoder(z)
        log_w = model.log_prior(z) + model.likelihood.log_prob(x, out, mask) - q.log_prob(z)  # (k, B)
        new_total = running_logsumexp(log_total, log_w)
        chunk_mean = (torch.exp(log_w - new_total).unsqueeze(-1) * model.likelihood.mean(out)).sum(0)
        mean = chunk_mean if mean is None else mean * torch.exp(log_total - new_total).unsqueeze(-1) + chunk_mean
        log_total = new_total
        if draws > 0:
            # M draws from this chunk's particles by their weights, then weighted reservoir sampling:
            # a draw moves to this chunk's choice with probability (chunk's total weight) / (total so
            # far), so after the last chunk each draw is Categorical(w̄) over all K particles.
            idx = torch.multinomial(torch.softmax(log_w, dim=0).T, draws, replacement=True,
                                    generator=generator).T  # (M, B)
            chosen = torch.gather(z, 0, idx.unsqueeze(-1).expand(-1, -1, z.shape[-1]))  # (M, B, Dz)
            if chosen_z is None:
                chosen_z = chosen
            else:
                u = torch.rand((draws, x.shape[0]), generator=generator, dtype=log_w.dtype, device=log_w.device)
                move = u < torch.exp(torch.logsumexp(log_w, dim=0) - new_total)
                chosen_z = torch.where(move.unsqueeze(-1), chosen, chosen_z)
        done += k
    single = fill_missing(x, mask, mean)
    multiple = None
    if draws > 0:
        values = model.likelihood.sample(model.decoder(chosen_z), generator)  # x ~ p(x | z), (M, B, D)
        multiple = fill_missing(x, mask, values)
    return single, multiple


@torch.no_grad()
def impute(model: DeepLatentModel, data: Tensor, mask: Tensor, particles: int = 1000, draws: int = 0,
           complete: Tensor | None = None, batch_size: int = 100, seed: int = 0,
           chunk_particles: int | None = None, proposal: str = "zero-filled",
           progress: Callable[[int], None] | None = None) -> ImputationResult:
    """Impute the missing entries of `data` (mask True = observed; missing entries may hold anything):
    the self-normalised IS estimate of E[x_m | x_o] with K = `particles`, and `draws` multiple
    imputations by sampling importance resampling. With `complete` (the full data), the mse over the
    missing entries. proposal: "zero-filled" (q(z | x̃0), MIWAE) or "completed" (q(z | x̆), miss-IWEM).
    Seeded: the same model, data, mask and seed give the same values. progress: called with the number
    of points of each finished batch (a stop request is honoured between batches: each is short)."""
    if proposal not in PROPOSALS:
        raise ValueError(f"unknown imputation proposal {proposal!r}; choose one of {', '.join(PROPOSALS)}")
    if particles < 1:
        raise ValueError(f"particles must be >= 1, got {particles}")
    if draws < 0:
        raise ValueError(f"draws must be >= 0, got {draws}")
    if mask.shape != data.shape or mask.dtype != torch.bool:
        raise ValueError(f"the mask must be a bool tensor shaped like the data {tuple(data.shape)}, got "
                         f"{mask.dtype} {tuple(mask.shape)}")
    model.eval()
    p = next(model.parameters())
    generator = torch.Generator(device=p.device).manual_seed(seed)
    singles, multiples = [], []
    for start in range(0, data.shape[0], batch_size):
        m = mask[start:start + batch_size].to(p.device)
        x = observed(data[start:start + batch_size].to(p.device, p.dtype), m)
        single, multiple = impute_batch(model, x, m, particles, draws, chunk_particles, generator, proposal)
        singles.append(single.cpu())
        if multiple is not None:
            multiples.append(multiple.cpu())
        if progress is not None:
            progress(x.shape[0])
    imputed = torch.cat(singles)
    mse, n_missing = (None, int((~mask).sum())) if complete is None else missing_mse(imputed, complete, mask)
    settings = {"particles": particles, "seed": seed, "draws": draws, "proposal": proposal}
    return ImputationResult(imputed, torch.cat(multiples, dim=1) if multiples else None, mse, n_missing,
                            f"self-normalised IS mean, K={particles}", settings)
