"""Moment matching (REM eq. 16-19) and batched Cholesky sampling of s(z), checked against direct
formulas, torch's MultivariateNormal and the exact posterior of a linear-Gaussian model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from deepem.inference.moments import robust_cholesky, sample_gaussian, weighted_moments
from deepem.models.linear_gaussian import exact_posterior, linear_gaussian_model, set_encoder_to_posterior

DT = torch.float64


def assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """torch.allclose with the worst deviation in the message (torch.testing is slow to import)."""
    assert torch.allclose(a, b, rtol=rtol, atol=atol), float((a - b).abs().max())


def test_weighted_moments_match_direct_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 3, 4, generator=g, dtype=DT)
    log_w = 3 * torch.randn(7, 3, generator=g, dtype=DT)
    mean, cov = weighted_moments(z, log_w, "weighted")
    mean_u, cov_u = weighted_moments(z, log_w, "unweighted")
    for b in range(3):
        zb, wb = z[:, b].numpy(), np.exp(log_w[:, b].numpy())
        a = wb / wb.sum()
        mu = a @ zb
        dev = zb - mu
        np.testing.assert_allclose(mean[b].numpy(), mu, rtol=1e-12)
        np.testing.assert_allclose(mean_u[b].numpy(), mu, rtol=1e-12)
        np.testing.assert_allclose(cov[b].numpy(), (a[:, None] * dev).T @ dev, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cov_u[b].numpy(), dev.T @ dev / 6, rtol=1e-10, atol=1e-12)


def test_weighted_moments_are_shift_invariant_in_log_weights() -> None:
    """Only normalised weights matter: adding a constant per data point (log p(x)) changes nothing,
    even a huge one that would overflow exp."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 2, 3, generator=g, dtype=DT)
    log_w = torch.randn(5, 2, generator=g, dtype=DT)
    m1, c1 = weighted_moments(z, log_w)
    m2, c2 = weighted_moments(z, log_w - torch.tensor([1e4, -1e4], dtype=DT))
    assert_close(m1, m2)
    assert_close(c1, c2)


def _snis_moments_error(k: int, seed: int) -> tuple[float, float]:
    """Errors of the weighted moments from K draws of a widened q against the exact posterior."""
    g = torch.Generator().manual_seed(100)
    model = linear_gaussian_model(5, 3, noise_std=0.8, generator=g)
    x = torch.randn(4, 5, generator=g, dtype=DT)
    set_encoder_to_posterior(model, std_scale=1.5)  # q: right means, wider marginals, no correlation
    m_exact, s_exact = (t.detach() for t in exact_posterior(model, x))
    torch.manual_seed(seed)
    with torch.no_grad():
        mean, std = model.encoder(x)
        z = mean + std * torch.randn(k, *mean.shape, dtype=DT)
        log_q = torch.distributions.Normal(mean, std).log_prob(z).sum(-1)
        log_w = model.log_joint(x, z) - log_q
        mu, cov = weighted_moments(z, log_w, "weighted")
    return float((mu - m_exact).norm() / m_exact.norm()), float((cov - s_exact).norm() / (s_exact.norm() * 2))


def test_weighted_moments_converge_to_exact_posterior() -> None:
    small = np.mean([_snis_moments_error(10, s) for s in range(4)], axis=0)
    large = np.mean([_snis_moments_error(20000, s) for s in range(4)], axis=0)
    assert (large < 0.2 * small).all(), (small, large)
    assert large[0] < 0.02 and large[1] < 0.03, large


def test_sample_gaussian_density_and_moments() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(2, 3, 3, generator=g, dtype=DT)
    cov = a @ a.transpose(-1, -2) + 0.1 * torch.eye(3, dtype=DT)
    mean = torch.randn(2, 3, generator=g, dtype=DT)
    jitter = 1e-3
    s = sample_gaussian(mean, cov, 40000, jitter=jitter, generator=g)
    assert s.z.shape == (40000, 2, 3) and s.log_density.shape == (40000, 2)
    full = cov + jitter * torch.eye(3, dtype=DT)
    ref = MultivariateNormal(mean, covariance_matrix=full).log_prob(s.z)
    assert_close(s.log_density, ref, rtol=1e-10, atol=1e-10)
    emp_mean = s.z.mean(0)
    emp_cov = torch.einsum("kbi,kbj->bij", s.z - emp_mean, s.z - emp_mean) / (s.z.shape[0] - 1)
    assert_close(emp_mean, mean, atol=0.05, rtol=0)
    assert_close(emp_cov, full, atol=0.1, rtol=0.05)


def test_sample_gaussian_keeps_dtype_and_handles_rank_deficient_float32() -> None:
    """A weighted covariance with one dominant particle is (numerically) rank one; the float64
    factorisation with a small jitter still works and the samples come back in float32."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(50, 4, 10, generator=g)
    log_w = torch.full((50, 4), -1e3)
    log_w[0] = 0.0
    log_w[1] = -2.0
    mean, cov = weighted_moments(z, log_w, "weighted")
    s = sample_gaussian(mean, cov, 8, jitter=1e-6)
    assert s.z.dtype == torch.float32 and s.log_density.dtype == torch.float32
    assert torch.isfinite(s.z).all() and torch.isfinite(s.log_density).all()


def test_robust_cholesky_raises_jitter_only_where_needed() -> None:
    v = torch.tensor([[1.0], [2.0], [0.5]], dtype=DT)
    singular = v @ v.T  # rank one, factorisation fails without jitter
    healthy = torch.eye(3, dtype=DT)
    chol = robust_cholesky(torch.stack([singular, healthy]), jitter=0.0)
    assert_close(chol[0] @ chol[0].T, singular, atol=1e-6, rtol=0)
    assert_close(chol[1], healthy)  # untouched: no jitter added to the healthy matrix


def test_bad_inputs_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="covariance"):
        weighted_moments(torch.zeros(3, 2, 2), torch.zeros(3, 2), "diagonal")
    with pytest.raises(ValueError, match=r"\(K, B, D\)"):
        weighted_moments(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="at least 2"):
        weighted_moments(torch.zeros(1, 2, 2), torch.zeros(1, 2), "unweighted")
    with pytest.raises(ValueError, match="raise the diagonal jitter"):
        robust_cholesky(torch.full((1, 2, 2), math.nan, dtype=DT), jitter=1e-6)
    with pytest.raises(ValueError, match="expected mean"):
        sample_gaussian(torch.zeros(2, 3), torch.zeros(2, 2, 2), 4)


def test_robust_cholesky_without_host_reads_gives_the_same_factors_and_nan_where_none_succeeds() -> None:
    v = torch.tensor([[1.0], [2.0], [0.5]], dtype=DT)
    singular = v @ v.T  # needs raised jitter
    healthy = torch.eye(3, dtype=DT)
    indefinite = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=DT))  # no jitter of 10 tries helps
    matrices = torch.stack([singular, healthy, singular * 3])
    assert torch.equal(robust_cholesky(matrices, jitter=0.0, host_reads=False), robust_cholesky(matrices, jitter=0.0))
    chol = robust_cholesky(torch.stack([singular, indefinite, healthy]), jitter=0.0, host_reads=False)
    assert torch.equal(chol[0], robust_cholesky(singular[None], jitter=0.0)[0]) and torch.equal(chol[2], healthy)
    assert chol[1].isnan().all()
    with pytest.raises(ValueError, match="raise the diagonal jitter"):  # (what host_reads=True does instead)
        robust_cholesky(indefinite[None], jitter=0.0)
    assert sample_gaussian(torch.zeros(1, 3), indefinite[None], 4, jitter=0.0, host_reads=False).z.isnan().all()
