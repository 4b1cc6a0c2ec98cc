"""AIS on the linear-Gaussian model, where log p(x) and p(z | x) are exact: the weight formula, the
error shrinking with temperatures, unbiasedness of the weights, the reverse direction and schedules."""

from __future__ import annotations

import math

import pytest
import torch

from deepem.inference.adaptation import adaptive_ais
from deepem.inference.ais import (
    AISState,
    DiagonalGaussian,
    TemperedPath,
    ais,
    ais_init,
    ais_step,
    chain_starts,
    check_path,
    hmc_step,
    linear_schedule,
    make_schedule,
    path_values,
    reweight,
    sigmoid_schedule,
    standard_normal,
)
from deepem.inference.numerics import normalized_weights
from deepem.models.linear_gaussian import exact_log_marginal, exact_posterior, linear_gaussian_model

DTYPE = torch.float64


class FullGaussian:
    """The exact posterior N(m_b, S) as an AIS initial distribution (sample + log_prob)."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        self.mean, self.chol = mean, torch.linalg.cholesky(cov)
        self.dist = torch.distributions.MultivariateNormal(mean, scale_tril=self.chol)

    def sample(self, n, generator=None):
        eps = torch.randn((n, *self.mean.shape), generator=generator, dtype=self.mean.dtype)
        return self.mean + eps @ self.chol.T

    def log_prob(self, z):
        return self.dist.log_prob(z)


@pytest.fixture(scope="module")
def problem():
    gen = torch.Generator().manual_seed(11)
    model = linear_gaussian_model(data_dim=6, latent_dim=3, noise_std=0.5, generator=gen)
    x = model.sample(6, gen, mean=False)
    return model, x, exact_log_marginal(model, x).detach()


def target(model, x):
    return lambda z: model.log_joint(x, z)


def run(model, x, q0, temperatures, chains, step_size, leapfrog_steps, gen, start=None, reverse=False,
        adapt=False, **options):
    """A driver over the AIS step: chains from q0 (or `start`), forward or reverse, fixed or adapted."""
    path = TemperedPath(target(model, x), q0)
    position = chain_starts(q0, chains, gen, start)
    temperatures = temperatures.flip(0) if reverse else temperatures
    driver = adaptive_ais if adapt else ais
    return driver(path, position, temperatures, step_size, leapfrog_steps, gen, **options)


def test_schedules():
    for betas in (linear_schedule(7), sigmoid_schedule(7), sigmoid_schedule(50, rad=2)):
        assert betas[0] == 0.0 and betas[-1] == 1.0 and betas.dtype == DTYPE
        assert torch.all(betas[1:] > betas[:-1])
    assert torch.allclose(linear_schedule(5), torch.tensor([0, 0.25, 0.5, 0.75, 1], dtype=DTYPE))
    s = sigmoid_schedule(9)
    assert torch.allclose(s + s.flip(0), torch.ones(9, dtype=DTYPE))  # symmetric about β = 1/2
    assert s[1] < 1 / 8  # denser than linear near the ends
    with pytest.raises(ValueError, match="at least 2"):
        linear_schedule(1)
    with pytest.raises(ValueError, match="unknown AIS schedule"):
        make_schedule("cosine", 10)


@pytest.mark.parametrize("reverse", [False, True])
def test_weights_are_exact_when_q0_is_the_posterior(problem, reverse):
    """With q0 = p(z | x), log p(x, z) - log q0(z) = log p(x) for every z, so every chain's
    log-weight sum_t (β_t - β_{t-1}) log p(x) must equal log p(x) (AIWAE eq. 8), in either direction."""
    model, x, exact = problem
    mean, cov = exact_posterior(model, x)
    q0 = FullGaussian(mean.detach(), cov.detach())
    gen = torch.Generator().manual_seed(0)
    start = q0.sample(1, gen)[0] if reverse else None
    result = run(model, x, q0, sigmoid_schedule(6), 4, 0.3, 3, gen, start=start, reverse=reverse)
    sign = -1.0 if reverse else 1.0
    assert torch.allclose(result.log_w, sign * exact.expand(4, -1), atol=1e-10)
    assert torch.allclose(result.log_marginal, exact, atol=1e-10)
    assert torch.allclose(result.ess, torch.full_like(exact, 4.0))


def test_error_shrinks_with_temperatures(problem):
    """From the prior, the estimate's error is large with 5 temperatures and small with 100."""
    model, x, exact = problem
    errors = {}
    for t in (5, 100):
        gen = torch.Generator().manual_seed(1)
        q0 = standard_normal(x.shape[0], 3, DTYPE)
        result = run(model, x, q0, sigmoid_schedule(t), 32, 0.2, 5, gen, adapt=True,
                     final_transition=False)
        errors[t] = float((result.log_marginal - exact).abs().mean())
        assert result.log_w.shape == (32, 6) and result.step_sizes.shape == (t - 2, 6)
    assert errors[100] < 0.15, errors
    assert errors[5] > 3 * errors[100], errors


def test_weights_are_unbiased(problem):
    """E[w] = p(x) for any number of temperatures (Neal 2001): the mean of w / p(x) over many chains
    is 1 within Monte Carlo error, even with only 4 temperatures."""
    model, x, exact = problem
    mean, cov = exact_posterior(model, x)
    q0 = DiagonalGaussian(mean.detach(), 1.3 * torch.sqrt(torch.diagonal(cov)).detach().expand_as(mean))
    gen = torch.Generator().manual_seed(2)
    result = run(model, x, q0, linear_schedule(4), 3000, 0.3, 3, gen)
    ratio = torch.exp(result.log_w - exact)  # (chains, points)
    m, se = ratio.mean(0), ratio.std(0) / math.sqrt(ratio.shape[0])
    assert torch.all((m - 1).abs() < 4 * se + 1e-3), (m, se)
    assert float(se.max()) < 0.05  # the check has power


def test_final_samples_follow_the_posterior(problem):
    """Self-normalised weighted averages of the final samples estimate posterior moments."""
    model, x, _ = problem
    mean, cov = exact_posterior(model, x)
    gen = torch.Generator().manual_seed(3)
    q0 = standard_normal(x.shape[0], 3, DTYPE)
    result = run(model, x, q0, sigmoid_schedule(40), 200, 0.3, 5, gen, adapt=True)
    w = normalized_weights(result.log_w)[..., None]
    post_mean = (w * result.samples).sum(0)
    sd = torch.sqrt(torch.diagonal(cov))
    assert torch.all((post_mean - mean).abs() < 0.3 * sd), (post_mean - mean) / sd
    post_var = (w * (result.samples - post_mean).pow(2)).sum(0)
    assert torch.allclose(post_var.mean(0), torch.diagonal(cov), rtol=0.3)
    assert 0.3 < result.mean_acceptance < 0.95


def test_nothing_is_differentiated_through_the_chains(problem):
    model, x, _ = problem
    model.zero_grad(set_to_none=True)
    gen = torch.Generator().manual_seed(4)
    result = run(model, x, standard_normal(x.shape[0], 3, DTYPE), linear_schedule(4), 2, 0.1, 2, gen)
    for t in (result.log_w, result.samples, result.log_marginal):
        assert not t.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_per_transition_step_sizes_and_errors(problem):
    model, x, _ = problem
    gen = torch.Generator().manual_seed(5)
    q0 = standard_normal(x.shape[0], 3, DTYPE)
    steps = [0.1, 0.2, torch.full((6,), 0.3, dtype=DTYPE)]
    result = run(model, x, q0, linear_schedule(4), 2, steps, 2, gen)
    assert torch.allclose(result.step_sizes[:, 0], torch.tensor([0.1, 0.2, 0.3], dtype=DTYPE))
    with pytest.raises(ValueError, match="3 transitions"):
        run(model, x, q0, linear_schedule(4), 2, [0.1, 0.2], 2, gen)
    with pytest.raises(ValueError, match="from exactly 0 to exactly 1"):
        run(model, x, q0, torch.tensor([0.0, 0.5]), 2, 0.1, 2, gen)
    with pytest.raises(ValueError, match="monotone"):
        check_path(torch.tensor([0.0, 0.7, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"chains=2, B, Dz"):
        chain_starts(q0, 2, gen, torch.zeros(3, 6, 3, dtype=DTYPE))
    assert check_path(linear_schedule(4).flip(0))[0] == 1.0  # reverse paths are paths too


def test_the_drivers_are_the_step_composed(problem):
    """`ais` is init + ais_step with the HMC kernel at every temperature, bit for bit, and the step
    takes its kernel and the kernel's parameters from the caller."""
    model, x, _ = problem
    q0 = standard_normal(x.shape[0], 3, DTYPE)
    temperatures = sigmoid_schedule(5)
    result = run(model, x, q0, temperatures, 3, 0.2, 2, torch.Generator().manual_seed(8))
    gen = torch.Generator().manual_seed(8)
    path = TemperedPath(target(model, x), q0)
    state = ais_init(path, q0.sample(3, gen))
    for beta in temperatures[1:].tolist():
        state, info = ais_step(state, beta, path, hmc_step, {"step_size": 0.2, "leapfrog_steps": 2}, gen)
    assert isinstance(state, AISState) and state.temperature == 1.0
    assert torch.equal(state.log_weights, result.log_w) and torch.equal(state.position, result.samples)


def test_a_kernel_that_never_moves_gives_the_importance_weight(problem):
    """With the identity as transition kernel the AIS weight telescopes to the plain importance weight
    log p(x, z0) - log q0(z0), whatever the temperatures (Neal 2001, eq. 3 with T_j = identity)."""
    model, x, _ = problem
    q0 = standard_normal(x.shape[0], 3, DTYPE)
    z0 = q0.sample(4, torch.Generator().manual_seed(9))
    calls = []

    def stay(state, log_density_fn, *, generator=None, **params):
        calls.append(params)
        return state, None

    path = TemperedPath(target(model, x), q0)
    state = ais_init(path, z0)
    for beta in sigmoid_schedule(7)[1:].tolist():
        state, _ = ais_step(state, beta, path, stay, {"step_size": 0.1})
    expected = (model.log_joint(x, z0) - q0.log_prob(z0)).detach()
    torch.testing.assert_close(state.log_weights, expected, rtol=0, atol=1e-10)
    assert calls == [{"step_size": 0.1}] * 6
    # reweight alone moves the weights and the tempered density, not the positions
    moved = reweight(ais_init(path, z0), 0.5)
    assert torch.equal(moved.position, z0)
    torch.testing.assert_close(moved.kernel_state.log_density,
                               (0.5 * model.log_joint(x, z0) + 0.5 * q0.log_prob(z0)).detach())


def test_temperatures_as_python_floats_run_the_same_chains_bit_for_bit(problem):
    # (a training step passes them so: its AIS then reads no tensor on the host)
    model, x, _ = problem
    q0 = standard_normal(x.shape[0], 3, DTYPE)
    schedule = sigmoid_schedule(5)
    values = path_values(schedule)
    assert values == schedule.tolist() and path_values(schedule.flip(0)) == schedule.flip(0).tolist()
    by_tensor = run(model, x, q0, schedule, 3, 0.2, 2, torch.Generator().manual_seed(1))
    by_floats = run(model, x, q0, tuple(values), 3, 0.2, 2, torch.Generator().manual_seed(1))
    assert torch.equal(by_tensor.log_w, by_floats.log_w) and torch.equal(by_tensor.samples, by_floats.samples)
    with pytest.raises(ValueError, match="from exactly 0 to exactly 1"):
        path_values([0.0, 0.5])
    with pytest.raises(ValueError, match="monotone"):
        path_values([1.0, 0.2, 0.5, 0.0])
