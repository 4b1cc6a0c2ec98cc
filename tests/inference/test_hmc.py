"""The HMC kernel: invariance of a known Gaussian, convergence from a bad start, acceptance, per-point
step sizes, rejection of non-finite proposals, and no graph kept between steps."""

from __future__ import annotations

import math

import pytest
import torch

from deepem.inference.adaptation import adapt_step_size
from deepem.inference.hmc import HMCState, evaluate, hmc_init, hmc_step

DTYPE = torch.float64


def correlated_gaussian(dim: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and a well-conditioned, clearly correlated covariance."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=gen, dtype=DTYPE)
    cov = a @ a.T / dim + 0.3 * torch.eye(dim, dtype=DTYPE)
    mean = torch.randn(dim, generator=gen, dtype=DTYPE)
    return mean, cov


def gaussian_log_density(mean: torch.Tensor, cov: torch.Tensor):
    precision = torch.linalg.inv(cov)

    def log_density(z: torch.Tensor) -> torch.Tensor:
        r = z - mean
        return -0.5 * torch.einsum("...i,ij,...j->...", r, precision, r)

    return log_density


def sample_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = z.reshape(-1, z.shape[-1])
    return flat.mean(0), torch.cov(flat.T)


def run_chain(state: HMCState, fn, steps: int, step_size, leapfrog_steps: int, gen: torch.Generator):
    acc = []
    for _ in range(steps):
        state, info = hmc_step(state, fn, step_size, leapfrog_steps, gen)
        acc.append(info.acceptance_prob)
    return state, torch.stack(acc)


def assert_matches_gaussian(z: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, n_eff: int) -> None:
    """Sample mean within 5 standard errors; covariance entries within 5 standard errors
    (Var[s_ij] ~ (S_ij^2 + S_ii S_jj) / n for Gaussian data)."""
    m, c = sample_stats(z)
    se_mean = torch.sqrt(torch.diagonal(cov) / n_eff)
    assert torch.all((m - mean).abs() < 5 * se_mean), (m, mean)
    se_cov = torch.sqrt((cov.pow(2) + torch.outer(torch.diagonal(cov), torch.diagonal(cov))) / n_eff)
    assert torch.all((c - cov).abs() < 5 * se_cov), (c, cov)


def test_leaves_correlated_gaussian_invariant():
    mean, cov = correlated_gaussian(3)
    fn = gaussian_log_density(mean, cov)
    gen = torch.Generator().manual_seed(1)
    chol = torch.linalg.cholesky(cov)
    # 200 chains x 10 points = 2000 independent exact samples
    z0 = mean + torch.randn(200, 10, 3, generator=gen, dtype=DTYPE) @ chol.T
    state, acc = run_chain(hmc_init(z0, fn), fn, 30, 1.0, 5, gen)
    assert_matches_gaussian(state.position, mean, cov, 2000)
    # it moved: the final positions are far from the starting ones, yet still exact samples
    assert 0.4 < float(acc.mean()) < 0.8
    assert float((state.position - z0).norm(dim=-1).mean()) > 0.5


def test_converges_from_a_bad_start():
    mean, cov = correlated_gaussian(4, seed=3)
    fn = gaussian_log_density(mean, cov)
    gen = torch.Generator().manual_seed(2)
    z0 = torch.full((250, 8, 4), 6.0, dtype=DTYPE)  # every chain starts many std away from the mean
    state, acc = run_chain(hmc_init(z0, fn), fn, 80, 0.3, 6, gen)
    assert_matches_gaussian(state.position, mean, cov, 2000)
    assert 0.0 <= float(acc.min()) and float(acc.max()) <= 1.0


def test_acceptance_is_a_probability_and_falls_with_step_size():
    mean, cov = correlated_gaussian(3)
    fn = gaussian_log_density(mean, cov)
    gen = torch.Generator().manual_seed(3)
    z0 = mean + torch.randn(100, 4, 3, generator=gen, dtype=DTYPE) @ torch.linalg.cholesky(cov).T
    # one value per point: tiny, moderate, large, huge
    steps = torch.tensor([1e-3, 0.3, 1.5, 5.0], dtype=DTYPE)
    _, info = hmc_step(hmc_init(z0, fn), fn, steps, 5, gen)
    acc = info.acceptance_prob.mean(0)  # per point
    assert torch.all((info.acceptance_prob >= 0) & (info.acceptance_prob <= 1))
    assert float(acc[0]) > 0.999  # energy error O(ε^2): nearly always accepted
    assert acc[0] > acc[1] > acc[3]
    assert float(acc[3]) < 0.2
    # is_accepted agrees with the acceptance probabilities on average
    assert abs(float(info.is_accepted.double().mean(0)[1]) - float(acc[1])) < 0.15


def test_per_chain_and_point_step_sizes_broadcast():
    fn = gaussian_log_density(torch.zeros(2, dtype=DTYPE), torch.eye(2, dtype=DTYPE))
    gen = torch.Generator().manual_seed(4)
    z0 = torch.randn(3, 5, 2, generator=gen, dtype=DTYPE)
    step = torch.full((3, 5), 0.2, dtype=DTYPE)
    step[1, 2] = 0.0  # a zero step leaves that one chain exactly where it was
    new, info = hmc_step(hmc_init(z0, fn), fn, step, 3, gen)
    assert torch.equal(new.position[1, 2], z0[1, 2])
    assert bool(info.is_accepted[1, 2])
    assert not torch.equal(new.position[0, 2], z0[0, 2])
    with pytest.raises(ValueError, match="does not broadcast"):
        hmc_step(hmc_init(z0, fn), fn, torch.ones(4, dtype=DTYPE), 3, gen)


def test_state_is_consistent_and_detached():
    """The returned log density and gradient are those at the returned position, and no graph or
    parameter gradient survives a step, even when the density depends on a parameter."""
    scale = torch.nn.Parameter(torch.tensor(1.5, dtype=DTYPE))

    def fn(z):
        return -0.5 * (z / scale).pow(2).sum(-1)

    gen = torch.Generator().manual_seed(5)
    state = hmc_init(torch.randn(4, 3, 2, generator=gen, dtype=DTYPE), fn)
    for _ in range(3):
        state, _ = hmc_step(state, fn, 0.5, 4, gen)
    fresh = evaluate(fn, state.position)
    assert torch.allclose(state.log_density, fresh.log_density)
    assert torch.allclose(state.grad, -state.position / 1.5**2)
    assert not state.position.requires_grad and not state.log_density.requires_grad
    assert state.grad.grad_fn is None and scale.grad is None


def test_non_finite_proposals_are_rejected():
    """A density that is -inf (or NaN) outside the unit ball: proposals leaving it are rejected and
    every chain stays inside, with finite state."""

    def fn(z):
        r2 = z.pow(2).sum(-1)
        val = -0.5 * r2
        return torch.where(r2 < 1.0, val, torch.where(z[..., 0] > 0, -torch.inf, torch.nan) + 0 * val)

    gen = torch.Generator().manual_seed(6)
    z0 = 0.3 * torch.rand(50, 2, 2, generator=gen, dtype=DTYPE)
    state = hmc_init(z0, fn)
    rejected = 0
    for _ in range(20):
        state, info = hmc_step(state, fn, 0.6, 3, gen)
        rejected += int(info.is_divergent.sum())
        assert not bool(info.is_accepted[info.is_divergent].any())
        assert torch.all(info.acceptance_prob[info.is_divergent] == 0)
    assert rejected > 0
    assert torch.isfinite(state.position).all() and torch.isfinite(state.log_density).all()
    assert float(state.position.pow(2).sum(-1).max()) < 1.0


def test_bad_arguments_are_named():
    fn = gaussian_log_density(torch.zeros(2, dtype=DTYPE), torch.eye(2, dtype=DTYPE))
    state = hmc_init(torch.zeros(2, 3, 2, dtype=DTYPE), fn)
    with pytest.raises(ValueError, match="leapfrog_steps"):
        hmc_step(state, fn, 0.1, 0)
    with pytest.raises(ValueError, match="one value per"):
        hmc_init(torch.zeros(2, 3, 2, dtype=DTYPE), lambda z: z.sum())


# step-size adaptation ------------------------------------------------------------------------
def test_adaptation_rule_is_multiplicative_and_clamped():
    step = torch.tensor([0.1, 0.1, 0.9, 2e-4], dtype=DTYPE)
    acc = torch.tensor([0.9, 0.1, 0.95, 0.0], dtype=DTYPE)
    new = adapt_step_size(step, acc, target=0.6, rate=0.1, min_step=1e-4, max_step=0.95)
    expected = torch.tensor([0.11, 0.1 / 1.1, 0.95, 2e-4 / 1.1], dtype=DTYPE)
    assert torch.allclose(new, expected)
    assert torch.equal(step, torch.tensor([0.1, 0.1, 0.9, 2e-4], dtype=DTYPE))  # pure: input unchanged
    with pytest.raises(ValueError, match="target"):
        adapt_step_size(step, acc, target=1.5)


def test_adaptation_drives_acceptance_to_target():
    """Per-point step sizes from very different starts end with acceptance near 0.6 on targets of
    very different scales."""
    scales = torch.tensor([0.05, 1.0, 3.0], dtype=DTYPE)  # one target scale per point

    def fn(z):
        return -0.5 * (z / scales[:, None]).pow(2).sum(-1)

    gen = torch.Generator().manual_seed(7)
    z = scales[:, None] * torch.randn(40, 3, 5, generator=gen, dtype=DTYPE)
    state = hmc_init(z, fn)
    step = torch.tensor([1.0, 1e-3, 1e-2], dtype=DTYPE)
    history = []
    for _ in range(400):
        state, info = hmc_step(state, fn, step, 3, gen)
        acc = info.acceptance_prob.mean(0)
        step = adapt_step_size(step, acc, target=0.6, rate=0.05, max_step=10.0)
        history.append(acc)
    late = torch.stack(history[-150:]).mean(0)
    assert torch.all((late - 0.6).abs() < 0.06), late
    # the adapted step scales with the target's width
    assert step[0] < step[1] < step[2]
    assert math.isclose(float(step[2] / step[1]), 3.0, rel_tol=0.35)
