"""The discrete-latent estimators on a stacked sigmoid belief net (two binary layers of 2 units: 16 joint
states), against exact expectations by enumerating every K-tuple of joint states (16^2 = 256 pairs for
K = 2): VIMCO's gradient is unbiased for the K-sample bound's, NVIL's for the ELBO's, and the sleep
phase (which draws the whole stack from the prior, top layer first) for ∇φ E_{p(x, h)} log q(h | x)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from deepem.methods.base import PHI, THETA
from deepem.methods.nvil import nvil_losses
from deepem.methods.rws import sleep_loss
from deepem.methods.vimco import vimco_surrogate
from deepem.models import ModelConfig, make_model
from deepem.models.enumeration import binary_states

D, SIZES = 4, (2, 2)
LATENTS = sum(SIZES)


@pytest.fixture
def sbn():
    torch.manual_seed(4)
    config = ModelConfig(latent="bernoulli", likelihood="bernoulli", architecture="sbn",
                         architecture_options={"layer_sizes": list(SIZES)})
    model = make_model(config, D).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
        model.prior.logits.copy_(torch.tensor([-1.0, 0.8]))
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    return model, x


def configurations(model, x, k):
    """Every (data point, K-tuple of joint states): x rows (T, D), latents (K, T, Dz) and the tuple's
    probability under q^K over the number of data points (T,). Differentiable in φ."""
    states = binary_states(LATENTS, torch.float64)
    idx = torch.tensor(list(itertools.product(range(states.shape[0]), repeat=k)))
    z = states[idx].transpose(0, 1)
    xs = x.repeat_interleave(z.shape[1], 0)
    zs = z.repeat(1, x.shape[0], 1)
    return xs, zs, model.encode(xs).log_prob(zs).sum(0).exp() / x.shape[0]


def flat_grad(value, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params, retain_graph=True)])


def expected_gradient(loss_of, model, xs, zs, weight, params):
    """sum over configurations of weight * ∇ loss_of(log_joint, log_q, index), weights held fixed."""
    total = 0.0
    for t in range(xs.shape[0]):
        x, z = xs[t:t + 1], zs[:, t:t + 1]
        total = total + weight[t].detach() * flat_grad(loss_of(model.log_joint(x, z), model.encode(x).log_prob(z), t),
                                                       params)
    return total


def test_vimco_gradient_is_unbiased_for_the_two_sample_bound(sbn):
    model, x = sbn
    xs, zs, weight = configurations(model, x, 2)
    assert xs.shape[0] == 2 * 16 ** 2
    log_w = model.log_joint(xs, zs) - model.encode(xs).log_prob(zs)
    params = model.generative_parameters() + model.encoder_parameters()
    exact = flat_grad((weight * (torch.logsumexp(log_w, 0) - math.log(2))).sum(), params)
    surrogate = lambda lj, lq, t: vimco_surrogate(lj, lq)[0].sum()  # noqa: E731  (maximised)
    estimate = expected_gradient(surrogate, model, xs, zs, weight, params)
    torch.testing.assert_close(estimate, exact, rtol=1e-9, atol=1e-12)
    # the q-parameters of every layer get a gradient: the score covers the whole chain
    for net in (model.encoder.first, *model.encoder.conditionals, *model.prior.conditionals):
        grad = flat_grad((weight * torch.logsumexp(log_w, 0)).sum(), list(net.parameters()))
        assert grad.abs().max() > 1e-3


def test_nvil_gradient_is_unbiased_for_the_elbo(sbn):
    model, x = sbn
    xs, zs, weight = configurations(model, x, 1)
    log_w = model.log_joint(xs, zs) - model.encode(xs).log_prob(zs)
    params = model.generative_parameters() + model.encoder_parameters()
    exact = flat_grad((weight * log_w.squeeze(0)).sum(), params)
    baseline = torch.tensor([0.7, -2.0], dtype=torch.float64).repeat_interleave(16)  # any function of x
    one, centre = torch.tensor(1.0, dtype=torch.float64), torch.tensor(-3.0, dtype=torch.float64)

    def loss(lj, lq, t):
        losses = nvil_losses(lj, lq, baseline[t:t + 1], centre, one)
        return losses[THETA] + losses[PHI]

    estimate = -expected_gradient(loss, model, xs, zs, weight, params)
    torch.testing.assert_close(estimate, exact, rtol=1e-9, atol=1e-12)


def test_sleep_phase_estimates_the_exact_gradient(sbn):
    """∇φ E_{p(x, h)} log q(h | x), exact over all 16 joint states h and 16 binary x, against the sleep
    loss on many ancestral draws of (h3 .. h1, x)."""
    model, _ = sbn
    h, xs = binary_states(LATENTS, torch.float64), binary_states(D, torch.float64)
    hh, xx = h.repeat_interleave(xs.shape[0], 0), xs.repeat(h.shape[0], 1)
    log_p = model.log_joint(xx, hh).detach()
    assert float(log_p.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    exact = flat_grad((log_p.exp() * model.encode(xx).log_prob(hh)).sum(), model.encoder_parameters())
    torch.manual_seed(0)
    estimate = -flat_grad(sleep_loss(model, 400_000), model.encoder_parameters())
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0.02)
    assert exact.abs().max() > 0.1
