"""Moment matching of a full-covariance Gaussian to a self-normalised importance sample, and batched
sampling from it: the hyperproposal s(z) of REM (Dieng & Paisley 2019, eq. 16-19, Alg. 1 and 2).

Shapes follow the rest of the library: particles first, z is (K, B, D), log-weights (K, B); one
Gaussian per data point, so means are (B, D), covariances and Cholesky factors (B, D, D).

Everything here is a fixed function of its inputs (s has no free parameters, REM section 4.2): call it
under `torch.no_grad()` or on detached tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from deepem.inference.distributions import standard_normal_log_prob
from deepem.inference.numerics import normalized_weights

COVARIANCES = ("weighted", "unweighted")


def weighted_moments(z: Tensor, log_w: Tensor, covariance: str = "weighted") -> tuple[Tensor, Tensor]:
    """Mean (B, D) and covariance (B, D, D) of the snIS approximation of p(z | x).

    mean: mu = sum_k alpha_k z_k (REM eq. 17-18), alpha = softmax(log_w) over particles.
    covariance="weighted": Sigma = sum_k alpha_k (z_k - mu)(z_k - mu)^T (eq. 18 and the boxes of
        Alg. 1-2): a consistent estimate of the posterior covariance, but of rank < min(K, ESS + 1)
        roughly, so it needs the diagonal jitter of `sample_gaussian` when the ESS is small.
    covariance="unweighted": Sigma = 1/(K-1) sum_k (z_k - mu)(z_k - mu)^T, the plain spread of the
        proposal's particles about the snIS mean (eq. 19, which the paper writes without the 1/(K-1),
        and the authors' released code). Full rank once K > D, but it estimates q's spread, not the
        posterior's, so it does not converge to the posterior covariance.

    The K x D x D outer products are never materialised: Sigma is one batched matrix product."""
    if z.dim() != 3 or log_w.shape != z.shape[:2]:
        raise ValueError(
            f"expected z shaped (K, B, D) and log-weights shaped (K, B), got {tuple(z.shape)} and "
            f"{tuple(log_w.shape)}"
        )
    if covariance not in COVARIANCES:
        raise ValueError(f"unknown covariance {covariance!r}; choose one of {COVARIANCES}")
    k = z.shape[0]
    alpha = normalized_weights(log_w)  # (K, B)
    mean = torch.einsum("kb,kbd->bd", alpha, z)
    dev = z - mean
    if covariance == "weighted":
        dev = dev * alpha.sqrt().unsqueeze(-1)
    else:
        if k < 2:
            raise ValueError("the unweighted covariance needs at least 2 particles; use K >= 2")
        dev = dev / math.sqrt(k - 1)
    cov = torch.einsum("kbi,kbj->bij", dev, dev)
    return mean, cov


def robust_cholesky(cov: Tensor, jitter: float, max_tries: int = 10, *, host_reads: bool = True) -> Tensor:
    """Lower Cholesky factor of cov + jitter * I, batched over leading dimensions.

    If a factor fails (a covariance that is only positive semi-definite in floating point), the jitter
    of the failing matrices is raised tenfold, up to `max_tries` times, before giving up. Rounding
    errors scale with the matrix, so the raised jitter is at least 1e-10 of its mean diagonal.

    host_reads=True stops at the first try where every factor succeeded (the host reads whether one
    failed: free on CPU) and raises a ValueError when one never does. host_reads=False reads nothing on
    the host (no wait for the device; a CUDA graph can hold it): it always makes the `max_tries` tries,
    keeps each matrix's factor from the first try that succeeded (the same factors as host_reads=True),
    and gives a factor of NaN to a matrix that never succeeded, for the step's non-finite check to catch."""
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    scale = torch.full(cov.shape[:-2], float(jitter), dtype=cov.dtype, device=cov.device)
    if not host_reads:
        return _cholesky_without_host_reads(cov, scale, eye, max_tries)
    for _ in range(max_tries):
        chol, info = torch.linalg.cholesky_ex(cov + scale[..., None, None] * eye)
        failed = info > 0
        if not bool(failed.any()):
            return chol
        if not bool(torch.isfinite(cov).all()):
            break
        scale = torch.where(failed, torch.maximum(scale * 10, _jitter_floor(cov)), scale)
    raise ValueError(
        "Cholesky factorisation of the moment-matched covariance failed (non-finite importance "
        "weights, or a covariance that is not positive definite); raise the diagonal jitter (REM's `jitter`)"
    )


def _jitter_floor(cov: Tensor) -> Tensor:
    return 1e-10 * torch.diagonal(cov, dim1=-2, dim2=-1).abs().mean(-1).clamp(min=1.0)


def _cholesky_without_host_reads(cov: Tensor, scale: Tensor, eye: Tensor, max_tries: int) -> Tensor:
    """`robust_cholesky`'s tries, all of them, decided on the device (see there)."""
    floor = _jitter_floor(cov)
    factor = torch.full_like(cov, math.nan)
    done = torch.zeros(cov.shape[:-2], dtype=torch.bool, device=cov.device)
    for _ in range(max_tries):
        chol, info = torch.linalg.cholesky_ex(cov + scale[..., None, None] * eye)
        succeeded = (info == 0) & ~done
        factor = torch.where(succeeded[..., None, None], chol, factor)
        done = done | succeeded
        scale = torch.where(done, scale, torch.maximum(scale * 10, floor))
    return factor


@dataclass
class GaussianSample:
    """K draws z = mean + L ε from N(mean, L L^T) per data point, with their log densities."""

    z: Tensor  # (K, B, D)
    log_density: Tensor  # (K, B)


def sample_gaussian(mean: Tensor, cov: Tensor, k: int, jitter: float = 1e-6,
                    generator: torch.Generator | None = None, *, host_reads: bool = True) -> GaussianSample:
    """Draw K samples per data point from N(mean_b, cov_b + jitter I) by batched Cholesky.

    The factorisation runs in float64 whatever the input dtype (it is B small D x D matrices, cheap
    next to a decoder call), which keeps rank-deficient weighted covariances factorable at small jitter.
    log s(z) is evaluated from the standard normal draw itself, log N(ε; 0, I) - sum log diag L, so no
    triangular solve is needed and the density is exact for the sample drawn. `host_reads`: as
    `robust_cholesky`'s (False: nothing is read on the host, and a failed factor gives NaN samples)."""
    if mean.dim() != 2 or cov.shape != (*mean.shape, mean.shape[-1]):
        raise ValueError(
            f"expected mean (B, D) and cov (B, D, D), got {tuple(mean.shape)} and {tuple(cov.shape)}"
        )
    chol = robust_cholesky(cov.double(), jitter, host_reads=host_reads)
    noise = torch.randn((k, *mean.shape), generator=generator, dtype=torch.float64, device=mean.device)
    z = mean.double() + torch.einsum("bij,kbj->kbi", chol, noise)
    half_log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (B,)
    log_density = standard_normal_log_prob(noise) - half_log_det
    # einsum returns a (K, B, D) view with permuted strides: make it contiguous, or every decoder
    # matmul on these particles (forward and backward) runs several times slower.
    return GaussianSample(z.to(mean.dtype).contiguous(), log_density.to(mean.dtype))
