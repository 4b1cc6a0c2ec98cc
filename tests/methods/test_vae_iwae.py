"""VAE and IWAE θ-gradients against the exact ∇θ log p(x) of the linear-Gaussian model."""

import pytest
import torch

from deepem.methods import THETA, make_method
from deepem.models.linear_gaussian import exact_log_marginal, linear_gaussian_model, set_encoder_to_posterior


def theta_gradient(model, loss):
    params = model.generative_parameters()
    return torch.cat([g.flatten() for g in torch.autograd.grad(-loss, params)])


def exact_gradient(model, x):
    params = model.generative_parameters()
    return torch.cat([g.flatten() for g in torch.autograd.grad(exact_log_marginal(model, x).mean(), params)])


def mean_method_gradient(model, x, name, k, seeds=20):
    method = make_method(name, particles=k)
    grads = []
    for s in range(seeds):
        torch.manual_seed(s)
        grads.append(theta_gradient(model, method(model, x).losses[THETA]))
    return torch.stack(grads).mean(0)


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


def test_iwae_theta_gradient_converges_to_exact(lg_model):
    model, x = lg_model
    set_encoder_to_posterior(model, std_scale=1.5)  # diagonal and too wide: K = 1 is biased
    exact = exact_gradient(model, x)
    errors = {k: relative_error(mean_method_gradient(model, x, "iwae", k), exact) for k in (1, 10, 1000)}
    assert errors[1000] < 0.03
    assert errors[1000] < errors[10] < errors[1]
    assert errors[1] > 0.1


def test_vae_gradient_is_exact_only_when_q_is_the_posterior():
    model = linear_gaussian_model(4, 1, generator=torch.Generator().manual_seed(5))
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    exact = exact_gradient(model, x)
    set_encoder_to_posterior(model)  # one latent: q equals p(z|x) exactly
    assert relative_error(mean_method_gradient(model, x, "vae", 500), exact) < 0.02
    set_encoder_to_posterior(model, std_scale=1.5)
    # With q != p(z|x) more samples only sharpen the ELBO gradient, which stays biased.
    assert relative_error(mean_method_gradient(model, x, "vae", 500), exact) > 0.05


def test_iwae_loss_is_the_negative_bound_and_both_groups_share_it(lg_model):
    model, x = lg_model
    torch.manual_seed(0)
    out = make_method("iwae", particles=7)(model, x)
    assert out.losses["theta"] is out.losses["phi"]
    assert out.log_w.shape == (7, 4)
    assert out.losses["theta"].item() == pytest.approx(-out.diagnostics["iw_bound"])
    assert 1 / 7 <= out.diagnostics["ess_fraction"] <= 1


def test_unknown_method_and_option_errors_are_clear():
    with pytest.raises(ValueError, match="unknown method 'rem3'.*available methods: .*iwae"):
        make_method("rem3")
    with pytest.raises(ValueError, match="has no option temperature.*particles"):
        make_method("iwae", temperature=2)
    with pytest.raises(ValueError, match="invalid particles = 0: must be an integer >= 1"):
        make_method("iwae", particles=0)
