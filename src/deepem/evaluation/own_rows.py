"""Imputation and scoring of any rows, not only a run's own splits: new rows, a user's file, one row.

Row-wise randomness: every random number a row uses (its K proposal particles, the completion of the
"completed" proposal, the resampling of the M draws and the draws themselves) comes from keys made of
the seed and the row's own observed values and mask (inference/keyed.py). A row's answer is therefore a
function of (model, row, mask, seed, K, proposal, draws, chunk_particles) alone: the same whatever other
rows come with it, in whatever order, in whatever batch size, and identical rows get identical answers.
The arithmetic stays batched: one decoder call for all particles of a chunk of a batch of rows. Batched
kernels can round a row differently by where it sits among the rows of the call (measured: MKL's GEMM
for some layer shapes, and float32 sums over the first dimension), so every model call is laid out
row by row with a row's inputs at positions that are multiples of ALIGN (the encoder sees ALIGN copies
of each row; a chunk's particles are rounded up to a multiple of ALIGN), sums over particles run along
each row's own contiguous values, and particles are chunked by a rule that does not look at the batch.
The result is bit for bit the same whatever the other rows (tests/evaluation/test_own_rows.py, with
one and two threads); the latent distributions with a network between blocks (two stochastic layers)
get the same random numbers but are not laid out this way, so theirs may differ in the last bits.

    impute_rows:  single imputation E[x_m | x_o] by the self-normalised IS mean with K particles, and
                  M draws by sampling importance resampling (Categorical of the normalised weights over
                  the K particles, then x_m ~ p(x_m | z); see evaluation/imputation.py).
    score_rows:   per-row IW bound of log p(x) (complete rows, no mask) or log p(x_o) (with a mask),
                  with K and the proposal recorded.

The numbers are not those of `evaluation.imputation.impute` or the log-likelihood estimators, which draw
from one generator in row order (the evaluation of a run's own test split); they are estimates of the
same quantities. Values are in the model's units: whoever standardised the rows converts the results back."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from deepem.evaluation.imputation import PROPOSALS, ImputationResult
from deepem.evaluation.loglik import DEFAULT_CHUNK_FLOATS, _widest_layer, require_q_density
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.inference.distributions import LatentDistribution
from deepem.inference.keyed import keyed_latent_sample, keyed_uniform, row_generators, row_keys, substream, take_rows
from deepem.models.likelihoods import observed
from deepem.models.lvm import DeepLatentModel

#: every batched model call puts a row's inputs at positions that are a multiple of this (module notes)
ALIGN = 16
#: the particle chunk is sized for this many rows, whatever the batch (see the module notes): memory
#: grows with batch_size beyond it; chunk_particles bounds it
CHUNK_ROWS = 100
# the uses of randomness within a row, each its own stream of the row's key
_PARTICLES, _COMPLETION_Z, _COMPLETION_X, _RESAMPLE, _RESERVOIR, _DRAW_X = range(1, 7)

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


def _chunk(model: DeepLatentModel, particles: int, chunk_particles: int | None) -> int:
    """Particles per decoder call: chunk_particles, or a size that depends on the model and K only
    (never on the batch: the chunking decides how a row's running sums are rounded)."""
    if chunk_particles is not None:
        return max(1, min(particles, chunk_particles))
    fits = DEFAULT_CHUNK_FLOATS // (CHUNK_ROWS * _widest_layer(model))
    return min(particles, max(ALIGN, fits // ALIGN * ALIGN))  # a multiple of ALIGN: no padding (_decode)


def _batches(data: Tensor, mask: Tensor | None, batch_size: int, like: Tensor):
    """(x, mask or None) per batch of rows: x in the model's dtype and device, missing entries zeroed."""
    for start in range(0, data.shape[0], batch_size):
        x = data[start:start + batch_size].to(like.device, like.dtype)
        m = None if mask is None else mask[start:start + batch_size].to(like.device)
        yield (x if m is None else observed(x, m)), m


def _encode(model: DeepLatentModel, x: Tensor, mask: Tensor | None = None) -> LatentDistribution:
    """q(z | x) of a batch, each row given to the encoder at a position that is a multiple of ALIGN
    (ALIGN copies of each row; the encoder costs little next to K decoder passes)."""
    copies = x.repeat_interleave(ALIGN, dim=0)
    q = model.encode(copies, None if mask is None else mask.repeat_interleave(ALIGN, dim=0))
    return take_rows(q, slice(None, None, ALIGN))


def _decode(model: DeepLatentModel, z: Tensor) -> Tensor:
    """decoder(z) for z (n, B, Dz): called on a (B, n', Dz) tensor, n' = n rounded up to a multiple of
    ALIGN (the last particle repeated), so that particle k of every row sits at a position = k modulo
    ALIGN; returned as a (n, B, F) view."""
    per_row = z.transpose(0, 1)
    pad = -z.shape[0] % ALIGN
    if pad:
        per_row = torch.cat([per_row, per_row[:, -1:].expand(-1, pad, -1)], dim=1)
    return model.decoder(per_row.contiguous())[:, :z.shape[0]].transpose(0, 1)


def _likelihood_sample(model: DeepLatentModel, out: Tensor, keys: Tensor) -> Tensor:
    """x ~ p(x | z) for decoder outputs (..., B, F), row b drawn with its own generator (any likelihood)."""
    generators = row_generators(keys, out.device)
    return torch.cat([model.likelihood.sample(out[..., b:b + 1, :], g) for b, g in enumerate(generators)], dim=-2)


def _proposal(model: DeepLatentModel, x: Tensor, mask: Tensor | None, proposal: str,
              keys: Tensor) -> LatentDistribution:
    """q(z | x̃0) ("zero-filled", or complete rows), or q(z | x̆) with x̆ completed row-wise ("completed")."""
    q0 = _encode(model, x, mask)
    if mask is None or proposal == "zero-filled":
        return q0
    z = keyed_latent_sample(q0, substream(keys, _COMPLETION_Z), 0, 1)
    fill = _likelihood_sample(model, _decode(model, z)[0], substream(keys, _COMPLETION_X))
    return _encode(model, torch.where(mask, x, fill))


def _over_particles(values: Tensor) -> Tensor:
    """(k, B, ...) as a contiguous (B, ..., k): sums over particles then run along the last dimension,
    one row at a time in the same order whatever B is (a sum over the first dimension is vectorised
    across rows, and in float32 its rounding changed with the number of rows)."""
    return values.movedim(0, -1).contiguous()


def _impute_batch(model: DeepLatentModel, x: Tensor, mask: Tensor, keys: Tensor, particles: int, draws: int,
                  chunk: int, proposal: str) -> tuple[Tensor, Tensor | None]:
    """Single (B, D) and multiple (draws, B, D) imputations of one batch, row-wise (module notes).
    The M draws: each chunk proposes M particles by the inverse CDF of its normalised weights, and a
    draw moves to the chunk's proposal with probability (chunk's total weight) / (total so far), which
    leaves every draw Categorical(w̄) over all K particles (weighted reservoir sampling)."""
    q = _proposal(model, x, mask, proposal, keys)
    particle_keys = substream(keys, _PARTICLES)
    resample_keys, reservoir_keys = substream(keys, _RESAMPLE), substream(keys, _RESERVOIR)
    log_total: Tensor | None = None  # running logsumexp_k log w_k, (B,)
    mean: Tensor | None = None  # running sum_k exp(log w_k - log_total) E[x | z_k], (B, D)
    chosen_z: Tensor | None = None  # the M resampled particles so far, (M, B, Dz)
    for start in range(0, particles, chunk):
        k = min(chunk, particles - start)
        z = keyed_latent_sample(q, particle_keys, start, k)  # (k, B, Dz)
        out = _decode(model, z)
        log_w = model.log_prior(z) + model.likelihood.log_prob(x, out, mask) - q.log_prob(z)  # (k, B)
        chunk_total = torch.logsumexp(_over_particles(log_w), dim=-1)
        new_total = chunk_total if log_total is None else torch.logaddexp(log_total, chunk_total)
        weighted = torch.exp(log_w - new_total).unsqueeze(-1) * model.likelihood.mean(out)  # (k, B, D)
        chunk_mean = _over_particles(weighted).sum(-1)
        mean = chunk_mean if mean is None else mean * torch.exp(log_total - new_total).unsqueeze(-1) + chunk_mean
        log_total = new_total
        if draws > 0:
            cdf = torch.cumsum(_over_particles(torch.exp(log_w - chunk_total)), dim=1)  # (B, k)
            u = keyed_uniform(resample_keys, start, 1, draws, cdf.dtype)[0] * cdf[:, -1:]  # (B, M)
            idx = torch.searchsorted(cdf, u).clamp(max=k - 1).T  # (M, B)
            chosen = torch.gather(z, 0, idx.unsqueeze(-1).expand(-1, -1, z.shape[-1]))  # (M, B, Dz)
            if chosen_z is None:
                chosen_z = chosen
            else:
                v = keyed_uniform(reservoir_keys, start, 1, draws, log_w.dtype)[0].T  # (M, B)
                move = v < torch.exp(chunk_total - new_total)
                chosen_z = torch.where(move.unsqueeze(-1), chosen, chosen_z)
    single = torch.where(mask, x, mean)
    if draws == 0:
        return single, None
    values = _likelihood_sample(model, _decode(model, chosen_z), substream(keys, _DRAW_X))  # (M, B, D)
    return single, torch.where(mask, x, values)


@torch.no_grad()
def impute_rows(model: DeepLatentModel, data: Tensor, mask: Tensor, particles: int = 1000, draws: int = 0,
                proposal: str = "zero-filled", seed: int = 0, batch_size: int = 100,
                chunk_particles: int | None = None, progress: Progress | None = None) -> ImputationResult:
    """Fill the missing entries (mask False) of `data` (N, D; missing entries may hold anything, NaN
    included). Observed entries come back exactly as given. `draws` > 0 adds (draws, N, D) multiple
    imputations, posterior draws by sampling importance resampling. proposal: "zero-filled" (q(z | x̃0),
    what miwae trains) or "completed" (q(z | x̆), what miss-IWEM trains).

    Row-wise: a row's imputation and draws are a function of (model, row, mask, seed, particles, draws,
    proposal, chunk_particles) only, not of the other rows, their order or batch_size (module notes)."""
    _check(data, mask, particles, proposal, batch_size)
    if draws < 0:
        raise ValueError(f"draws must be >= 0, got {draws}")
    require_q_density(model)
    model.eval()
    p = next(model.parameters())
    chunk = _chunk(model, particles, chunk_particles)
    singles, multiples = [], []
    for x, m in _batches(data, mask, batch_size, p):
        single, multiple = _impute_batch(model, x, m, row_keys(x, m, seed), particles, draws, chunk, proposal)
        singles.append(single.cpu())
        if multiple is not None:
            multiples.append(multiple.cpu())
        if progress is not None:
            progress(x.shape[0])
    imputed = torch.cat(singles) if singles else data.new_zeros(data.shape)
    multiple = None
    if draws > 0:
        multiple = torch.cat(multiples, dim=1) if multiples else data.new_zeros((draws, *data.shape))
    settings = {"particles": particles, "seed": seed, "draws": draws, "proposal": proposal}
    return ImputationResult(imputed, multiple, None, int((~mask).sum()), f"self-normalised IS mean, K={particles}",
                            settings)


def _score_batch(model: DeepLatentModel, x: Tensor, mask: Tensor | None, keys: Tensor, particles: int,
                 chunk: int, proposal: str) -> Tensor:
    """(B,) IW estimates of log p(x) or log p(x_o) for one batch, particles row-wise."""
    q = _proposal(model, x, mask, proposal, keys)
    particle_keys = substream(keys, _PARTICLES)
    total: Tensor | None = None
    for start in range(0, particles, chunk):
        z = keyed_latent_sample(q, particle_keys, start, min(chunk, particles - start))
        log_w = model.log_prior(z) + model.likelihood.log_prob(x, _decode(model, z), mask) - q.log_prob(z)
        chunk_total = torch.logsumexp(_over_particles(log_w), dim=-1)
        total = chunk_total if total is None else torch.logaddexp(total, chunk_total)
    return total - math.log(particles)


@torch.no_grad()
def score_rows(model: DeepLatentModel, data: Tensor, mask: Tensor | None = None, particles: int = 1000,
               proposal: str = "completed", seed: int = 0, batch_size: int = 100,
               chunk_particles: int | None = None, progress: Progress | None = None) -> LogLikelihoodEstimate:
    """Per-row IW bound of log p(x), or of log p(x_o) with a mask (True = observed), K = `particles`.
    Without a mask the proposal is q(z | x); with one, `proposal` picks q(z | x̆) ("completed") or
    q(z | x̃0) ("zero-filled"). Row-wise: a row's score is a function of (model, row, mask, seed,
    particles, proposal, chunk_particles) only (module notes)."""
    _check(data, mask, particles, proposal, batch_size)
    require_q_density(model)
    model.eval()
    p = next(model.parameters())
    chunk = _chunk(model, particles, chunk_particles)
    parts = []
    for x, m in _batches(data, mask, batch_size, p):
        parts.append(_score_batch(model, x, m, row_keys(x, m, seed), particles, chunk, proposal)
                     .to(torch.float64).cpu())
        if progress is not None:
            progress(x.shape[0])
    what = "log p(x)" if mask is None else f"log p(x_o), q from {proposal} input"
    settings = {"particles": particles, "seed": seed, "proposal": None if mask is None else proposal}
    per_row = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
    return LogLikelihoodEstimate(per_row, f"IWAE bound of {what}, K={particles}", settings)
