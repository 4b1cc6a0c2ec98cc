"""AIWAE (Alg. 1) on the linear-Gaussian model: the θ-gradient converges to the exact ∇θ log p(x) as
chains K or temperatures T grow, φ gets the VAE's reparameterised ELBO gradient, step sizes adapt and
live in the checkpoint, nothing is back-propagated through the chains, and training raises the exact
log-likelihood."""

from __future__ import annotations

import pytest
import torch
from em_testing import (  # noqa: F401  (single_thread is a fixture)
    PHI,
    THETA,
    exact_theta_grad,
    flat_grad,
    make_problem,
    method_grad,
    single_thread,
)

from deepem.methods.aiwae import AIWAE
from deepem.methods.registry import make_method, method_options
from deepem.methods.vae import VAE
from deepem.models.linear_gaussian import exact_log_marginal, linear_gaussian_model
from deepem.training.step import make_step

pytestmark = pytest.mark.usefixtures("single_thread")


def mean_squared_relative_error(method: AIWAE, model, x, exact: torch.Tensor, repeats: int) -> float:
    """E ||g - g*||^2 / ||g*||^2 over seeded draws: bias^2 + variance of the θ-gradient estimate."""
    errs = [float((method_grad(method, model, x, THETA, seed) - exact).pow(2).sum() / exact.pow(2).sum())
            for seed in range(repeats)]
    return sum(errs) / len(errs)


def test_theta_gradient_approaches_exact_gradient():
    """A poor encoder (wide and shifted) makes plain importance sampling bad; more AIS chains or more
    temperatures must bring the estimate to ∇θ log p(x) (AIWAE eq. 9-10)."""
    model, x = make_problem(seed=2, n=5, std_scale=2.5, mean_shift=1.0)
    exact = exact_theta_grad(model, x)
    err = {}
    for k, t in [(1, 2), (100, 2), (1, 12), (100, 12)]:
        method = AIWAE(particles=k, temperatures=t, leapfrog_steps=5, step_size=0.3)
        err[(k, t)] = mean_squared_relative_error(method, model, x, exact, repeats=12)
    assert err[(1, 12)] < err[(1, 2)] / 3, err  # more temperatures
    assert err[(100, 12)] < err[(1, 12)] / 10, err  # more chains
    assert err[(100, 12)] < 0.04, err
    # with two temperatures AIS is importance sampling plus one HMC move at β = 1: the weights do the work
    assert err[(100, 2)] < 0.1, err


def test_phi_gets_the_reparameterised_elbo_gradient():
    model, x = make_problem(seed=3)
    aiwae = method_grad(AIWAE(particles=3, temperatures=3), model, x, PHI, seed=5)
    vae = method_grad(VAE(particles=1), model, x, PHI, seed=5)  # same noise: drawn first in both
    assert torch.allclose(aiwae, vae, atol=1e-12)


def graph_size(t: torch.Tensor) -> int:
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
    return len(seen)


def test_no_backpropagation_through_the_chains():
    """The θ loss's graph is one decoder pass at detached final positions, whatever T is, so memory
    does not grow with the number of temperatures; its gradient touches θ only."""
    model, x = make_problem(seed=4)
    sizes = []
    for t in (3, 30):
        out = AIWAE(particles=2, temperatures=t, leapfrog_steps=3)(model, x)
        sizes.append(graph_size(out.losses[THETA]))
        phi_grad = flat_grad(out.losses[THETA], model.encoder_parameters())
        assert torch.count_nonzero(phi_grad) == 0
    assert sizes[0] == sizes[1]
    assert all(p.grad is None for p in model.parameters())


def test_step_sizes_adapt_and_are_checkpointed():
    model, x = make_problem(seed=5)
    method = AIWAE(particles=4, temperatures=4, leapfrog_steps=3, step_size=1e-3, adaptation_rate=0.1)
    assert method.step_sizes.shape == (3,)
    for _ in range(5):
        method(model, x)
        method.after_update()
    # tiny steps are always accepted, so every temperature's step grew by 1.1 per update
    assert torch.allclose(method.step_sizes, torch.full((3,), 1e-3 * 1.1**5, dtype=torch.float64))
    state = method.state_dict()
    assert "step_sizes" in state
    fresh = AIWAE(particles=4, temperatures=4, leapfrog_steps=3)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.step_sizes, method.step_sizes)
    # a forward pass alone (evaluation) does not adapt
    before = method.step_sizes.clone()
    method(model, x)
    assert torch.equal(method.step_sizes, before)


def test_acceptance_converges_to_target():
    model, x = make_problem(seed=6)
    method = AIWAE(particles=8, temperatures=3, leapfrog_steps=4, step_size=2.0, adaptation_rate=0.05)
    acc = []
    for i in range(120):
        out = method(model, x)
        method.after_update()
        if i >= 80:
            acc.append(out.diagnostics["acceptance"])
    assert abs(sum(acc) / len(acc) - 0.6) < 0.08, sum(acc) / len(acc)


STEPS = 60


def test_training_raises_exact_log_likelihood():
    """Fit a linear-Gaussian model to data from another one with AIWAE; the exact log p(x) of the
    training data rises most of the way to that of the generating model."""
    gen = torch.Generator().manual_seed(7)
    truth = linear_gaussian_model(data_dim=4, latent_dim=2, noise_std=0.3, generator=gen)
    x = truth.sample(64, gen, mean=False)
    target = float(exact_log_marginal(truth, x).mean().detach())
    torch.manual_seed(8)
    model = linear_gaussian_model(data_dim=4, latent_dim=2, noise_std=1.0, generator=gen)
    start = float(exact_log_marginal(model, x).mean().detach())
    method = AIWAE(particles=4, temperatures=4, leapfrog_steps=3, step_size=0.2)
    step = make_step(model, method, lr=0.03)
    for _ in range(STEPS):
        out = step(x).output
    end = float(exact_log_marginal(model, x).mean().detach())
    assert end - start > 0.7 * (target - start), (start, end, target)
    assert set(out.losses) == {THETA, PHI}
    assert 0.3 < out.diagnostics["acceptance"] < 0.9


def test_registry_and_bad_options():
    method = make_method("aiwae", particles=3, temperatures=6, leapfrog_steps=2)
    assert isinstance(method, AIWAE) and method.particles == 3 and method.step_sizes.shape == (5,)
    opts = method_options("aiwae")
    assert opts["particles"] == 5 and opts["temperatures"] == 5 and opts["target_acceptance"] == 0.6
    with pytest.raises(ValueError, match="temperatures"):
        AIWAE(temperatures=1)
    with pytest.raises(ValueError, match="leapfrog_steps"):
        AIWAE(leapfrog_steps=0)
    with pytest.raises(ValueError, match="unknown AIS schedule"):
        AIWAE(schedule="cosine")


def test_draws_come_from_the_generator_passed_in():
    """forward(..., generator=g) draws every particle and momentum from g: the same g state gives the
    same losses bit for bit and the global generator is left alone; without g the global one is used
    (the numbers of the golden record)."""
    model, x = make_problem(seed=6)
    method = AIWAE(particles=3, temperatures=4, leapfrog_steps=2)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = method(model, x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), before)
    b = method(model, x, generator=torch.Generator().manual_seed(5))
    for group in (THETA, PHI):
        assert torch.equal(a.losses[group], b.losses[group])
    assert not torch.equal(a.losses[THETA], method(model, x, generator=torch.Generator().manual_seed(6)).losses[THETA])
    torch.manual_seed(5)
    c = method(model, x)
    assert torch.equal(c.losses[THETA], a.losses[THETA])  # one stream: the same draws in the same order
