"""The discrete-latent estimators against exact expectations by enumeration, on a sigmoid belief net
small enough that every sum over latent configurations (and over tuples of K of them) is finite.

- VIMCO's gradient (θ and φ) has exactly the expectation of the K-sample bound's gradient;
- NVIL's has exactly the expectation of the ELBO's gradient, whatever the baseline and centre;
- their φ-gradient variance (exact, by enumeration) is below plain REINFORCE's;
- the wake-sleep sleep phase estimates ∇φ E_{p(x, h)} log q(h | x);
- a trained NVIL baseline lowers the variance of the learning signal on held-out data."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from deepem.methods import make_method
from deepem.methods.base import PHI, THETA
from deepem.methods.nvil import BASELINE, nvil_losses
from deepem.methods.rws import sleep_loss
from deepem.methods.vimco import leave_one_out_bounds, vimco_surrogate
from deepem.models import BernoulliEncoder, BernoulliLikelihood, BernoulliPrior, DeepLatentModel, mlp
from deepem.models.enumeration import binary_states

LATENTS, DATA_DIM = 3, 4
ONE = torch.tensor(1.0, dtype=torch.float64)


@pytest.fixture
def sbn():
    torch.manual_seed(2)
    prior = BernoulliPrior(LATENTS)
    model = DeepLatentModel(mlp(LATENTS, [6], DATA_DIM), BernoulliLikelihood(), BernoulliEncoder(DATA_DIM, LATENTS),
                            LATENTS, DATA_DIM, prior).double()
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([-1.0, 0.3, 1.2]))
        for p in model.parameters():
            p.mul_(2.0)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    return model, x


def configurations(model, x, k):
    """Every (data point, K-tuple of states): x rows (T, D), latents (K, T, Dz) and the probability of
    the tuple under q^K divided by the number of data points (T,), so that a sum over configurations
    weighted by it is the batch mean of an expectation. Differentiable in φ."""
    states = binary_states(LATENTS, torch.float64)
    idx = torch.tensor(list(itertools.product(range(states.shape[0]), repeat=k)))  # (S^K, K)
    z = states[idx].transpose(0, 1)
    xs = x.repeat_interleave(z.shape[1], 0)
    zs = z.repeat(1, x.shape[0], 1)
    weight = model.encode(xs).log_prob(zs).sum(0).exp() / x.shape[0]
    return xs, zs, weight


def flat_grad(value, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params, retain_graph=True)])


def per_configuration(loss_of, model, xs, zs, params):
    """The gradient in `params` of loss_of(log_joint, log_q, index) for every configuration: (T, P)."""
    rows = []
    for t in range(xs.shape[0]):
        x, z = xs[t:t + 1], zs[:, t:t + 1]
        rows.append(flat_grad(loss_of(model.log_joint(x, z), model.encode(x).log_prob(z), t), params))
    return torch.stack(rows)


def mean_and_variance(grads, weight):
    """E[g] and E||g - E g||^2 of per-configuration gradients (T, P) under the configuration weights."""
    w = weight.detach() / weight.detach().sum()
    mean = w @ grads
    return mean, float(w @ (grads - mean).pow(2).sum(1))


@pytest.mark.parametrize("k", [2, 3])
def test_vimco_gradient_is_unbiased_for_the_k_sample_bound(sbn, k):
    model, x = sbn
    xs, zs, weight = configurations(model, x, k)
    log_w = model.log_joint(xs, zs) - model.encode(xs).log_prob(zs)
    params = model.generative_parameters() + model.encoder_parameters()
    exact = flat_grad((weight * (torch.logsumexp(log_w, 0) - math.log(k))).sum(), params)  # ∇ E_{q^K}[L_K]
    grads = per_configuration(lambda lj, lq, t: -vimco_surrogate(lj, lq)[0].sum(), model, xs, zs, params)
    estimate, _ = mean_and_variance(-grads, weight)
    torch.testing.assert_close(estimate * weight.detach().sum(), exact, rtol=1e-9, atol=1e-12)


def test_leave_one_out_bounds_by_hand():
    log_w = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    for j in range(3):
        others = [i for i in range(3) if i != j]
        geometric = math.exp(sum(log_w[i].item() for i in others) / 2)
        expected = math.log((sum(math.exp(log_w[i].item()) for i in others) + geometric) / 3)
        assert leave_one_out_bounds(log_w)[j].item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("centre", [0.0, -4.0])
def test_nvil_gradient_is_unbiased_for_the_elbo_whatever_the_baseline(sbn, centre):
    model, x = sbn
    xs, zs, weight = configurations(model, x, 1)
    log_w = model.log_joint(xs, zs) - model.encode(xs).log_prob(zs)
    params = model.generative_parameters() + model.encoder_parameters()
    exact = flat_grad((weight * log_w.squeeze(0)).sum(), params)  # ∇ ELBO, sampling distribution included
    per_point = torch.randn(x.shape[0], dtype=torch.float64)  # any function of x (not of h)
    baseline = per_point.repeat_interleave(xs.shape[0] // x.shape[0])
    c = torch.tensor(centre, dtype=torch.float64)

    def loss(lj, lq, t):
        losses = nvil_losses(lj, lq, baseline[t:t + 1], c, ONE)
        return losses[THETA] + losses[PHI]  # each loss touches only its own group here

    estimate, _ = mean_and_variance(-per_configuration(loss, model, xs, zs, params), weight)
    torch.testing.assert_close(estimate * weight.detach().sum(), exact, rtol=1e-9, atol=1e-12)


def test_baselines_lower_the_exact_phi_gradient_variance(sbn):
    """Exact variances of the φ-gradient estimators (summed over parameters) on the same model."""
    model, x = sbn
    phi = model.encoder_parameters()
    variances = {}
    for k in (2, 3):
        xs, zs, weight = configurations(model, x, k)

        def vimco(lj, lq, t):
            return -vimco_surrogate(lj, lq)[0].sum()

        def reinforce(lj, lq, t):  # the K-sample bound with its raw value as the learning signal
            bound = torch.logsumexp(lj - lq, 0) - math.log(lj.shape[0])
            return -(bound + (bound.detach() * lq).sum(0)).sum()

        for name, fn in (("vimco", vimco), ("reinforce", reinforce)):
            variances[f"{name}-k{k}"] = mean_and_variance(per_configuration(fn, model, xs, zs, phi), weight)[1]
    xs, zs, weight = configurations(model, x, 1)
    with torch.no_grad():
        log_w = (model.log_joint(xs, zs) - model.encode(xs).log_prob(zs)).squeeze(0)
        elbo_mean = float((weight * log_w).sum() / weight.sum())
    for name, centre in (("nvil-centred", elbo_mean), ("reinforce-k1", 0.0)):
        c = torch.tensor(centre, dtype=torch.float64)
        fn = lambda lj, lq, t, c=c: nvil_losses(lj, lq, lj.new_zeros(1), c, ONE)[PHI]  # noqa: E731
        variances[name] = mean_and_variance(per_configuration(fn, model, xs, zs, phi), weight)[1]
    for k in (2, 3):
        assert variances[f"vimco-k{k}"] < 0.5 * variances[f"reinforce-k{k}"], variances
    assert variances["nvil-centred"] < 0.5 * variances["reinforce-k1"], variances


def test_sleep_phase_estimates_the_exact_gradient(sbn):
    """∇φ E_{p(x, h)} log q(h | x), exact by enumerating h and x, against the sleep loss on many draws."""
    model, _ = sbn
    h = binary_states(LATENTS, torch.float64)
    xs = binary_states(DATA_DIM, torch.float64)
    hh = h.repeat_interleave(xs.shape[0], 0)
    xx = xs.repeat(h.shape[0], 1)
    log_p = (model.log_joint(xx, hh)).detach()
    exact = flat_grad((log_p.exp() * model.encode(xx).log_prob(hh)).sum(), model.encoder_parameters())
    torch.manual_seed(0)
    estimate = -flat_grad(sleep_loss(model, 400_000), model.encoder_parameters())
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0.02)
    method = make_method("wake-sleep")
    assert method.particles == 1 and method.phi_update == "sleep"


def test_a_trained_nvil_baseline_lowers_the_signal_variance_on_held_out_data(sbn):
    model, _ = sbn
    torch.manual_seed(0)
    with torch.no_grad():
        data = model.sample(600, mean=False)
    train, held_out = data[:500], data[500:]
    method = make_method("nvil", normalise=False).double()
    method.bind(model)
    assert set(method.extra_parameter_groups()) == {BASELINE}
    opt = torch.optim.Adam(method.extra_parameter_groups()[BASELINE], lr=1e-2)
    for step in range(300):
        x = train[(step * 20) % 500:(step * 20) % 500 + 20]
        opt.zero_grad()
        out = method(model, x)
        out.losses[BASELINE].backward(inputs=method.extra_parameter_groups()[BASELINE])
        opt.step()
        method.after_update()
    with torch.no_grad():
        torch.manual_seed(1)
        q = model.encode(held_out)
        z = q.sample(1)
        signal = (model.log_joint(held_out, z) - q.log_prob(z)).squeeze(0)
        centred = signal - method.signal_mean.double()
        residual = centred - method.baseline(held_out)
    assert float(residual.var()) < 0.7 * float(centred.var())
