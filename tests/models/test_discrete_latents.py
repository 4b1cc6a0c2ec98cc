"""A sigmoid belief net with 8 binary latents (256 states): exact log p(x), p(z | x) and the exact
gradient of log p(x) in the prior's logits come from enumeration; the importance-weighted estimator
with a Bernoulli q, and the reweighted θ-gradient, must converge to them."""

from __future__ import annotations

import pytest
import torch

from deepem.evaluation import iw_log_likelihood
from deepem.methods import make_method
from deepem.methods.base import IncompatibleModelError, draw
from deepem.models import BernoulliEncoder, BernoulliLikelihood, BernoulliPrior, DeepLatentModel, mlp
from deepem.models.enumeration import exact_log_marginal, exact_posterior_means

LATENTS, DATA_DIM = 8, 10


@pytest.fixture
def sbn():
    torch.manual_seed(0)
    prior = BernoulliPrior(LATENTS)
    model = DeepLatentModel(mlp(LATENTS, [16], DATA_DIM), BernoulliLikelihood(), BernoulliEncoder(DATA_DIM, LATENTS),
                            LATENTS, DATA_DIM, prior).double()
    with torch.no_grad():
        prior.logits.copy_(torch.linspace(-1.5, 1.5, LATENTS, dtype=torch.float64))
        for p in model.decoder.parameters():
            p.mul_(3.0)  # a sharper likelihood: a posterior far from the prior
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((6, DATA_DIM), 0.5, dtype=torch.float64), generator=g)
    return model, x


def test_iw_estimate_converges_to_enumeration(sbn):
    model, x = sbn
    exact = exact_log_marginal(model, x).detach()
    errors = {k: float((iw_log_likelihood(model, x, k, seed=3).per_point - exact).abs().mean())
              for k in (10, 300, 100_000)}
    assert errors[100_000] < 0.01
    assert errors[100_000] < errors[300] < errors[10]


def test_snis_posterior_means_converge_to_enumeration(sbn):
    model, x = sbn
    exact = exact_posterior_means(model, x)
    torch.manual_seed(4)
    with torch.no_grad():
        part = draw(model, x, 200_000, reparameterize=False)
        w = torch.softmax(part.log_w, 0)
        snis = (w.unsqueeze(-1) * part.z).sum(0)
    torch.testing.assert_close(snis, exact, atol=0.015, rtol=0)


def test_prior_logits_get_the_exact_gradient(sbn):
    """RWS's θ-loss is -sum_k sg(α_k) log p(x, z_k): its gradient in the prior logits converges to
    ∇ log p(x) computed by differentiating the enumerated marginal."""
    model, x = sbn
    logits = model.prior.logits
    (exact,) = torch.autograd.grad(exact_log_marginal(model, x).mean(), logits)
    method = make_method("rws", particles=20000)
    method.bind(model)
    torch.manual_seed(5)
    (estimate,) = torch.autograd.grad(-method(model, x).losses["theta"], logits)
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)
    assert exact.abs().max() > 0.1  # the check is not trivially satisfied by a zero gradient


def test_prior_logits_are_part_of_theta(sbn):
    model, _ = sbn
    assert any(p is model.prior.logits for p in model.generative_parameters())
    assert all(p is not model.prior.logits for p in model.encoder_parameters())


@pytest.mark.parametrize("name", ["vae", "iwae", "iwae-dreg", "iwem", "aiwae", "rem-v1"])
def test_reparameterised_methods_refuse_binary_latents(sbn, name):
    model, _ = sbn
    with pytest.raises(IncompatibleModelError, match="methods that work with this model: .*rws"):
        make_method(name).bind(model)


def test_bernoulli_q_refuses_rsample(sbn):
    model, x = sbn
    with pytest.raises(ValueError, match="no reparameterised sample"):
        draw(model, x, 2, reparameterize=True)


def test_sleep_phase_on_binary_latents_trains_the_encoder_only(sbn):
    model, x = sbn
    method = make_method("rws", particles=3, phi_update="sleep")
    method.bind(model)
    out = method(model, x)
    grads = torch.autograd.grad(out.losses["phi"], model.encoder_parameters())
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_binary_latents_default_to_the_papers_200_units():
    from deepem.models import ModelConfig

    assert ModelConfig().latent_dim == 50
    assert ModelConfig(latent="bernoulli").latent_dim == 200
    assert ModelConfig(latent="bernoulli", latent_dim=8).latent_dim == 8


def test_rws_theta_gradient_converges_to_the_exact_gradient_as_k_grows(sbn):
    """Every θ parameter (decoder and prior): relative error of RWS's θ-gradient against ∇θ log p(x)
    from enumeration, shrinking with K."""
    model, x = sbn
    theta = model.generative_parameters()
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(exact_log_marginal(model, x).mean(), theta)])
    errors = {}
    for k in (10, 300, 20000):
        method = make_method("rws", particles=k)
        method.bind(model)
        torch.manual_seed(6)
        grads = torch.autograd.grad(-method(model, x).losses["theta"], theta)
        estimate = torch.cat([g.reshape(-1) for g in grads])
        errors[k] = float((estimate - exact).norm() / exact.norm())
    assert errors[20000] < 0.05 and errors[20000] < errors[300] < errors[10], errors
