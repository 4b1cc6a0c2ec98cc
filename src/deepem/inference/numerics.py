"""Log-space numerics for importance weights. Particle dimension is always first: (K, B, ...)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from deepem.inference.denormals import flush_denormals_everywhere


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """log (1/K) sum_k exp(log_w_k) along `dim`, stable for log-weights of any magnitude."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def normalized_weights(log_w: Tensor, dim: int = 0) -> Tensor:
    """Self-normalised importance weights exp(log_w_k - logsumexp(log_w)); they sum to one along `dim`."""
    return torch.softmax(log_w, dim=dim)


def effective_sample_size(log_w: Tensor, dim: int = 0) -> Tensor:
    """Kish's ESS = (sum w)^2 / sum w^2, computed in log space; between 1 and K."""
    return torch.exp(2 * torch.logsumexp(log_w, dim=dim) - torch.logsumexp(2 * log_w, dim=dim))


def running_logsumexp(total: Tensor | None, log_w_chunk: Tensor, dim: int = 0) -> Tensor:
    """Fold one chunk of log-weights into a running logsumexp, so memory does not grow with K."""
    chunk = torch.logsumexp(log_w_chunk, dim=dim)
    return chunk if total is None else torch.logaddexp(total, chunk)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat float denormals as zero inside the block (CPU), on every thread that computes, then put the
    caller's previous floating-point environment back on all of them.

    Self-normalised weights of hopeless particles (1e-30 and below) times activations give denormal
    products, which make CPU arithmetic several times slower on many CPUs; as coefficients they are zero
    anyway. torch.set_flush_denormal alone reaches the calling thread only, not the intra-op workers
    (inference/denormals.py)."""
    with flush_denormals_everywhere():
        yield
