"""Property-based checks (hypothesis) of the log-space numerics and of moment matching, on inputs of
any magnitude up to ±1e4 (where exp overflows in float64): log_mean_exp agrees with an independent
float64 reference (max-shift and math.fsum), self-normalised weights are non-negative and sum to
one, the ESS lies in [1, K], all three are invariant to shifting the log-weights by a constant, and
moment-matched covariances are symmetric positive (semi-)definite, positive definite once jittered.

Derandomised: the examples are the same on every run (the suite is deterministic)."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from deepem.inference.moments import robust_cholesky, weighted_moments
from deepem.inference.numerics import effective_sample_size, log_mean_exp, normalized_weights

PROPERTY = settings(derandomize=True, deadline=None, max_examples=150)

magnitudes = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
#: (K, B) log-weights: K particles (first dimension), B data points.
log_weights = arrays(np.float64, array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
                     elements=magnitudes)


def reference_log_mean_exp(column: list[float]) -> float:
    """log (1/K) sum exp(x_k) in float64 by max shift and exactly rounded summation."""
    m = max(column)
    return m + math.log(math.fsum(math.exp(x - m) for x in column) / len(column))


@PROPERTY
@given(log_weights)
def test_log_mean_exp_matches_float64_reference(log_w: np.ndarray) -> None:
    got = log_mean_exp(torch.from_numpy(log_w))
    for b in range(log_w.shape[1]):
        expected = reference_log_mean_exp(log_w[:, b].tolist())
        assert math.isclose(float(got[b]), expected, rel_tol=1e-13, abs_tol=1e-11), (float(got[b]), expected)
        assert min(log_w[:, b]) - 1e-9 <= float(got[b]) <= max(log_w[:, b]) + 1e-9  # a mean lies within


@PROPERTY
@given(log_weights)
def test_log_mean_exp_in_float32_is_accurate_to_float32_precision(log_w: np.ndarray) -> None:
    x32 = torch.from_numpy(log_w).float()
    got = log_mean_exp(x32)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    for b in range(log_w.shape[1]):
        column = x32[:, b].double().tolist()  # the reference sees the same rounded inputs
        expected = reference_log_mean_exp(column)
        scale = 1.0 + max(abs(v) for v in column) + math.log(len(column))
        assert abs(float(got[b]) - expected) <= 8 * torch.finfo(torch.float32).eps * scale


@PROPERTY
@given(log_weights)
def test_normalized_weights_are_a_distribution(log_w: np.ndarray) -> None:
    w = normalized_weights(torch.from_numpy(log_w))
    assert (w >= 0).all() and torch.isfinite(w).all()
    assert torch.allclose(w.sum(0), torch.ones(log_w.shape[1], dtype=torch.float64), rtol=0, atol=1e-12)
    for b in range(log_w.shape[1]):
        lse = reference_log_mean_exp(log_w[:, b].tolist()) + math.log(log_w.shape[0])
        expected = [math.exp(x - lse) for x in log_w[:, b]]
        assert np.allclose(w[:, b].numpy(), expected, rtol=1e-11, atol=1e-15)


@PROPERTY
@given(log_weights)
def test_ess_lies_between_one_and_k(log_w: np.ndarray) -> None:
    k = log_w.shape[0]
    ess = effective_sample_size(torch.from_numpy(log_w))
    assert torch.isfinite(ess).all()
    assert (ess >= 1 - 1e-9).all() and (ess <= k * (1 + 1e-9)).all()
    w = normalized_weights(torch.from_numpy(log_w))
    assert torch.allclose(ess, 1 / (w**2).sum(0), rtol=1e-9)  # Kish's formula on the weights


@PROPERTY
@given(log_weights, magnitudes)
def test_shifting_log_weights_shifts_log_mean_exp_and_leaves_weights_and_ess(log_w: np.ndarray,
                                                                            shift: float) -> None:
    x = torch.from_numpy(log_w)
    moved = x + shift
    scale = 1e-13 * (1 + x.abs().max() + abs(shift))
    assert torch.allclose(log_mean_exp(moved), log_mean_exp(x) + shift, rtol=0, atol=float(1e3 * scale))
    # Rounding of x + shift perturbs each log-weight by up to ulp(|x| + |shift|); the weights then move by
    # that much relatively.
    tol = float(4 * torch.finfo(torch.float64).eps * (x.abs().max() + abs(shift) + 1))
    assert torch.allclose(normalized_weights(moved), normalized_weights(x), rtol=4 * tol, atol=4 * tol)
    assert torch.allclose(effective_sample_size(moved), effective_sample_size(x), rtol=8 * tol + 1e-12)


particles_and_weights = st.integers(1, 12).flatmap(lambda k: st.tuples(
    arrays(np.float64, (k, 3, 4), elements=st.floats(-50, 50, allow_nan=False)),
    arrays(np.float64, (k, 3), elements=magnitudes),
))


@PROPERTY
@given(particles_and_weights)
def test_moment_matched_covariances_are_symmetric_positive_definite(data: tuple[np.ndarray, np.ndarray]) -> None:
    z, log_w = (torch.from_numpy(a) for a in data)
    for covariance in ("weighted", "unweighted") if z.shape[0] > 1 else ("weighted",):
        mean, cov = weighted_moments(z, log_w, covariance)
        assert torch.isfinite(mean).all() and torch.isfinite(cov).all()
        # the mean is a convex combination of the particles
        assert (mean >= z.min(0).values - 1e-9).all() and (mean <= z.max(0).values + 1e-9).all()
        assert torch.allclose(cov, cov.transpose(-1, -2), rtol=0, atol=1e-12 * (1 + float(cov.abs().max())))
        eig = torch.linalg.eigvalsh(cov)
        assert (eig >= -1e-10 * (1 + float(eig.abs().max()))).all()  # positive semi-definite
        # with the sampler's jitter it is positive definite: the Cholesky factor exists and reproduces it
        chol = robust_cholesky(cov, 1e-6)
        assert (torch.diagonal(chol, dim1=-2, dim2=-1) > 0).all()
        eye = torch.eye(4, dtype=cov.dtype)
        assert torch.allclose(chol @ chol.transpose(-1, -2), cov + 1e-6 * eye, rtol=1e-9, atol=1e-9)
