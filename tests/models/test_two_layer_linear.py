"""Two linear-Gaussian stochastic layers built through the mlp-2layer classes (hierarchical prior, chained
q, first-layer decoder, with linear networks): log p(x) is known in closed form (x is Gaussian), so the
IW evaluator, AIS from the prior and from the encoder, BDMC, and the θ-gradients of the snIS methods
must converge to it."""

from __future__ import annotations

import pytest
import torch
from tests.methods.em_testing import single_thread  # noqa: F401  (a fixture)

from deepem.evaluation.ais import ais_log_likelihood
from deepem.evaluation.bdmc import bdmc
from deepem.evaluation.diagnostics import active_units_per_layer, kl_estimator, kl_to_prior
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.methods import make_method
from deepem.methods.base import THETA
from deepem.models.linear_gaussian_2layer import (
    exact_log_marginal,
    exact_marginal,
    set_encoder_near_posterior,
    two_layer_linear_gaussian_model,
)

D, D1, D2 = 5, 3, 2


def problem(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = two_layer_linear_gaussian_model(D, (D1, D2), generator=g)
    set_encoder_near_posterior(model)
    mean, cov = exact_marginal(model)
    with torch.no_grad():  # x ~ N(mean, cov), drawn with the seeded generator
        x = mean + torch.randn(n, D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    return model, x


def test_closed_form_matches_simulation():
    """The closed-form mean and covariance of x are those of ancestral draws through the model."""
    model, _ = problem()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        z = model.sample_prior(40000, g)
        x = model.likelihood.sample(model.decoder(z), g)
    mean, cov = exact_marginal(model)
    assert float((x.mean(0) - mean.detach()).abs().max()) < 0.05
    assert float((torch.cov(x.T) - cov.detach()).abs().max()) < 0.1


def test_iw_estimate_converges_to_exact_log_marginal(single_thread):  # noqa: F811
    model, x = problem()
    exact = exact_log_marginal(model, x).detach()
    err = {k: float((iw_log_likelihood(model, x, particles=k, seed=0).per_point - exact).abs().mean())
           for k in (1, 30000)}
    # measured: mean |error| K=1 0.55 nats, K=30000 0.0046 (per point it shrinks as 1/sqrt(K))
    assert err[30000] < 0.012 and err[30000] < err[1] / 20


@pytest.mark.parametrize("initial", ["prior", "encoder"])
def test_ais_converges_to_exact_log_marginal(initial, single_thread):  # noqa: F811
    model, x = problem()
    exact = exact_log_marginal(model, x).detach()
    est = ais_log_likelihood(model, x, chains=64, temperatures=200, leapfrog_steps=5, initial=initial, seed=0)
    # measured: mean |error| 0.047 nats from the prior, 0.012 from the encoder (8 chains: 0.11 and 0.031)
    assert float((est.per_point - exact).abs().mean()) < 0.07


def test_bdmc_brackets_the_exact_value(single_thread):  # noqa: F811
    model, _ = problem()
    result = bdmc(model, n_points=6, chains=16, temperatures=200, leapfrog_steps=5, seed=0)
    exact = float(exact_log_marginal(model, result.data.to(torch.float64)).detach().mean())
    # measured: lower -6.409, exact -6.435, upper -6.315 (stochastic bounds: each within noise of its side)
    assert float(result.lower.mean()) <= exact + 0.05
    assert float(result.upper.mean()) >= exact - 0.05
    assert result.gap < 0.2


def covered_grad(model, loss):
    """The θ-gradient over the parameters the closed form covers: all of θ except the rows of p(z1|z2)'s
    network that would make its std depend on z2 (zero in this model, outside the closed form)."""
    grad = dict(zip([n for n, _ in model.named_parameters() if not n.startswith("encoder")],
                    flat_grad_split(loss, model), strict=True))
    grad["prior.conditional.net.0.weight"] = grad["prior.conditional.net.0.weight"][:D1]
    return torch.cat([g.reshape(-1) for g in grad.values()])


def flat_grad_split(loss, model):
    params = [p for n, p in model.named_parameters() if not n.startswith("encoder")]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


@pytest.mark.parametrize("name", ["rws", "iwae"])
def test_snis_theta_gradients_converge_to_the_exact_gradient(name, single_thread):  # noqa: F811
    model, x = problem()
    exact = covered_grad(model, -exact_log_marginal(model, x).mean())
    errors = {}
    for k in (2, 200, 20000):
        torch.manual_seed(0)
        out = make_method(name, particles=k)(model, x)
        errors[k] = float((covered_grad(model, out.losses[THETA]) - exact).norm() / exact.norm())
    # measured (rws and iwae alike, same draws): relative error K=2 1.41, K=200 0.16, K=20000 0.021
    assert errors[20000] < 0.03 and errors[20000] < errors[200] < errors[2]


def test_kl_is_monte_carlo_and_active_units_are_per_layer():
    model, x = problem(n=200)
    assert kl_estimator(model) == "Monte Carlo, 64 draws per point"
    # KL(q || p) per point = E_q[log q - log p(z)]; against a 2000-draw reference
    kl = kl_to_prior(model, x)
    q = model.encode(x)
    with torch.no_grad():
        z = q.sample(2000, torch.Generator().manual_seed(5))
        reference = float((q.log_prob(z) - model.log_prior(z)).mean())
    assert abs(kl - reference) < 0.02 and kl > 0
    assert active_units_per_layer(model, x) == [D1, D2]
    with torch.no_grad():  # switch off z2's dependence on z1: the second layer's means no longer vary
        model.encoder.second.net[-1].weight.zero_()
    assert active_units_per_layer(model, x) == [D1, 0]


def test_masked_data_give_the_observed_marginal_and_ignore_missing_values():
    model, x = problem()
    mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) < 0.6
    mask[:, 0] = True
    mean, cov = (t.detach() for t in exact_marginal(model))
    exact = torch.stack([torch.distributions.MultivariateNormal(mean[m], cov[m][:, m]).log_prob(xi[m])
                         for xi, m in zip(x, mask, strict=True)])
    err = {k: iw_log_likelihood(model, x, particles=k, seed=0, mask=mask).per_point - exact for k in (10, 30000)}
    # the encoder sees zeros in the holes, so q is a worse proposal than with full data: the bound
    # converges more slowly. measured mean |error|: K=10 0.29, K=30000 0.042 (all rows below exact)
    assert float(err[30000].abs().mean()) < 0.08 < float(err[10].abs().mean())
    assert float(err[30000].max()) < 0.02
    # a training step reads no missing value: NaN or 1e30 in the holes give bitwise the same losses
    losses = []
    for fill in (float("nan"), 1e30):
        torch.manual_seed(0)
        out = make_method("iwae-dreg", particles=4)(model, torch.where(mask, x, fill), mask=mask)
        losses.append({k: v.detach() for k, v in out.losses.items()})
    assert all(torch.equal(losses[0][k], losses[1][k]) and torch.isfinite(losses[0][k]) for k in losses[0])
