"""Randomness addressed by row: every random number a row uses is a function of a 64-bit key made from
the seed and the row itself, and of a counter, never of the rows around it or of the order they come in.

    row_keys(x, mask, seed)          one key per row: a 64-bit hash of (seed, observed values, mask)
    substream(keys, stream)          independent keys for the different uses within a row
    keyed_uniform / keyed_normal     noise of any shape per row, the counter being the element's index
    keyed_latent_sample              n draws of q(z | x) per row from keyed noise, chunk by chunk
    row_generators                   one seeded torch.Generator per row, for samplers without a keyed form

The generator is counter-based (the splitmix64 output function of Steele, Lea & Flood 2014 applied to
key + counter * golden gamma), computed with int64 tensor arithmetic, so it is vectorised over rows and
particles, runs on the rows' device, and gives the same numbers for particle k of a row whether k is
drawn in one chunk or many. Uniforms carry 53 random bits; normals are the inverse normal CDF of them."""

from __future__ import annotations

import torch
from torch import Tensor

from deepem.inference.chained import ChainedBernoulli, ChainedGaussian
from deepem.inference.distributions import DiagonalGaussian, FactorisedBernoulli, LatentDistribution

__all__ = ["keyed_latent_sample", "keyed_normal", "keyed_uniform", "row_generators", "row_keys", "substream",
           "take_rows"]


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_GAMMA = _signed(0x9E3779B97F4A7C15)
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)
#: what a missing entry contributes to its row's key (a NaN pattern, which no observed value has)
_MISSING = _signed(0x7FF8_DEAD_BEEF_0001)


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic: it copies the sign bit)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: Tensor) -> Tensor:
    """splitmix64's output function on int64 tensors (multiplication wraps modulo 2^64); overwrites x."""
    shifted = torch.empty_like(x)
    for bits, factor in ((30, _MUL1), (27, _MUL2), (31, None)):
        torch.bitwise_right_shift(x, bits, out=shifted)
        shifted &= (1 << (64 - bits)) - 1  # a logical shift: torch's >> copies the sign bit
        x ^= shifted
        if factor is not None:
            x *= factor
    return x


def row_keys(x: Tensor, mask: Tensor | None, seed: int) -> Tensor:
    """(B,) int64 keys: a hash of the seed, each row's observed values (as the float64 of the value the
    model reads, so -0.0 and 0.0 agree) and which entries are missing; missing entries' contents are
    never read. Identical rows with identical masks get identical keys."""
    values = x.detach().to(torch.float64) + 0.0  # + 0.0 turns -0.0 into 0.0
    bits = values.view(torch.int64)
    if mask is not None:
        bits = torch.where(mask, bits, torch.full_like(bits, _MISSING))
    h = torch.full((x.shape[0],), _signed(seed), dtype=torch.int64, device=x.device)
    h = mix64(h + _GAMMA)
    for j in range(x.shape[1]):
        h = mix64(h ^ bits[:, j])  # (h ^ ... is a new tensor: mix64 may overwrite it)
    return h


def substream(keys: Tensor, stream: int) -> Tensor:
    """Keys of an independent stream per row (stream: a small integer naming one use of randomness)."""
    return mix64(keys ^ mix64(torch.full_like(keys, _signed((stream + 1) * _GAMMA))))  # keys ^ ...: a new tensor


def _bits(keys: Tensor, start: int, n: int, width: int) -> Tensor:
    """(n, B, width) random 64-bit patterns: element (k, b, j) is splitmix64 of key b at counter
    (start + k) * width + j. Laid out row by row in memory (a (B, n, width) tensor seen as (n, B, width)),
    so that a row's particles are contiguous."""
    counters = torch.arange(start * width, (start + n) * width, dtype=torch.int64, device=keys.device)
    counters *= _GAMMA
    return mix64(keys.view(-1, 1, 1) + counters.view(1, n, width)).transpose(0, 1)


def keyed_uniform(keys: Tensor, start: int, n: int, width: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """(n, B, width) uniforms in (0, 1): particles start .. start + n - 1 of each row's stream."""
    top = _shift_right(_bits(keys, start, n, width), 11).to(torch.float64)
    return ((top + 0.5) * 2.0 ** -53).to(dtype)


def keyed_normal(keys: Tensor, start: int, n: int, width: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """(n, B, width) standard normals (inverse CDF of `keyed_uniform`), particles start .. start + n - 1."""
    return torch.special.ndtri(keyed_uniform(keys, start, n, width)).to(dtype)


@torch.no_grad()
def keyed_latent_sample(q: LatentDistribution, keys: Tensor, start: int, n: int) -> Tensor:
    """Particles start .. start + n - 1 of z ~ q(z | x) per row, shaped (n, B, Dz), from keyed noise:
    the same q and keys give the same particle k however the particles are chunked."""
    if type(q) is DiagonalGaussian:
        return q.loc + q.std * keyed_normal(keys, start, n, q.loc.shape[-1], q.loc.dtype)
    if type(q) is FactorisedBernoulli:
        u = keyed_uniform(keys, start, n, q.logits.shape[-1], q.logits.dtype)
        return (u < torch.sigmoid(q.logits)).to(q.logits.dtype)
    if type(q) is ChainedGaussian:
        root = q.root
        r = root.loc + root.std * keyed_normal(keys, start, n, root.loc.shape[-1], root.loc.dtype)
        mean, std = q._child_params(r)
        child = mean + std * keyed_normal(substream(keys, 1), start, n, mean.shape[-1], mean.dtype)
        return q._join(r, child)
    if type(q) is ChainedBernoulli and q.root_logits.dim() == 2:
        logits = q.root_logits
        blocks = [(keyed_uniform(keys, start, n, logits.shape[-1], logits.dtype) < torch.sigmoid(logits))
                  .to(logits.dtype)]
        for i in range(len(q.conditionals)):
            logits = q._logits(i, blocks[-1])
            u = keyed_uniform(substream(keys, i + 1), start, n, logits.shape[-1], logits.dtype)
            blocks.append((u < torch.sigmoid(logits)).to(logits.dtype))
        return q._join(blocks)
    raise TypeError(f"no row-wise sampler for a {type(q).__name__} q(z | x); add one to inference/keyed.py")


def take_rows(q: LatentDistribution, rows: slice) -> LatentDistribution:
    """q(z | x) of the rows `rows` of a batch (the distributions keyed_latent_sample knows)."""
    if type(q) is DiagonalGaussian:
        return DiagonalGaussian(q.loc[rows], q.std[rows])
    if type(q) is FactorisedBernoulli:
        return FactorisedBernoulli(q.logits[rows])
    if type(q) is ChainedGaussian:
        return ChainedGaussian(take_rows(q.root, rows), q.conditional, q.root_first, q.frozen)
    if type(q) is ChainedBernoulli and q.root_logits.dim() == 2:
        return ChainedBernoulli(q.root_logits[rows], q.conditionals, q.sizes, q.root_first, q.frozen)
    raise TypeError(f"no row-wise sampler for a {type(q).__name__} q(z | x); add one to inference/keyed.py")


def row_generators(keys: Tensor, device: torch.device | str) -> list[torch.Generator]:
    """One torch.Generator per row, seeded by its key: for samplers (a likelihood's) that take a generator."""
    return [torch.Generator(device=device).manual_seed(int(k) & ((1 << 64) - 1)) for k in keys.tolist()]
