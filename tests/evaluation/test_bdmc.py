"""BDMC on the linear-Gaussian model: the forward (lower) and reverse (upper) AIS bounds sandwich the
exact log p(x) of the simulated data, and the gap between them closes as temperatures grow."""

from __future__ import annotations

import pytest
import torch

from deepem.evaluation import bdmc
from deepem.evaluation.bdmc import reversed_step_sizes, simulate
from deepem.models.linear_gaussian import exact_log_marginal, linear_gaussian_model


@pytest.fixture(scope="module")
def model():
    return linear_gaussian_model(data_dim=5, latent_dim=2, noise_std=0.5,
                                 generator=torch.Generator().manual_seed(31))


def test_bounds_sandwich_exact_value_and_gap_closes(model):
    results = {t: bdmc(model, n_points=12, chains=8, temperatures=t, leapfrog_steps=5, seed=4)
               for t in (5, 100)}
    for t, r in results.items():
        exact = exact_log_marginal(model, r.data).detach()
        # Each bound holds in expectation; over 12 points the noise is well below 0.1 nats.
        assert float(r.lower.mean()) < float(exact.mean()) + 0.1, t
        assert float(r.upper.mean()) > float(exact.mean()) - 0.1, t
        assert r.lower.shape == r.upper.shape == (12,)
    assert results[5].gap > 0.5  # a short chain leaves a wide sandwich...
    assert results[100].gap < 0.25  # ...a long one a narrow one
    assert results[100].gap < results[5].gap / 4
    s = results[100].summary()
    assert s["gap"] == results[100].gap and s["temperatures"] == 100 and s["n_points"] == 12


def test_same_seed_same_data_and_bounds(model):
    a = bdmc(model, n_points=3, chains=2, temperatures=4, leapfrog_steps=2, seed=9)
    b = bdmc(model, n_points=3, chains=2, temperatures=4, leapfrog_steps=2, seed=9)
    assert torch.equal(a.data, b.data) and torch.equal(a.lower, b.lower) and torch.equal(a.upper, b.upper)


def test_simulated_pairs_come_from_the_model(model):
    """x | z ~ N(W z + b, s^2): the residuals of 4000 simulated pairs have the model's noise variance."""
    x, z = simulate(model, 4000, torch.Generator().manual_seed(0))
    with torch.no_grad():
        resid = x - model.decoder(z)
    assert abs(float(resid.var()) - 0.25) < 0.02
    assert abs(float(z.var()) - 1.0) < 0.08


def test_reverse_step_sizes_line_up_with_temperatures():
    """Forward transition i ran at β_{i+1}; reverse transition j runs at β_{T-1-j}; T = 5."""
    forward = torch.tensor([[0.1], [0.2], [0.3]])  # used at β_1, β_2, β_3 (β_4 = 1 skipped)
    steps = reversed_step_sizes(forward, 4, 0.5)  # reverse runs at β_3, β_2, β_1, (β_0 skipped)
    assert [float(s) for s in steps[:3]] == pytest.approx([0.3, 0.2, 0.1])
    assert len(steps) == 4
    assert reversed_step_sizes(torch.zeros(0), 1, 0.5) == [0.5]  # T = 2: nothing ran forward
