"""The closed forms every other test relies on, checked independently."""

import math

import torch
from scipy.stats import multivariate_normal

from deepem.methods.base import draw
from deepem.models.linear_gaussian import exact_log_marginal, exact_posterior, set_encoder_to_posterior


def test_exact_log_marginal_matches_scipy(lg_model):
    model, x = lg_model
    w, b = model.decoder.weight.detach(), model.decoder.bias.detach()
    cov = (w @ w.T + 0.25 * torch.eye(5, dtype=torch.float64)).numpy()
    expected = multivariate_normal(b.numpy(), cov).logpdf(x.numpy())
    assert torch.allclose(exact_log_marginal(model, x).detach(), torch.as_tensor(expected), atol=1e-10)


def test_exact_posterior_satisfies_bayes_rule(lg_model):
    """log p(z|x) = log p(x,z) - log p(x) at arbitrary z."""
    model, x = lg_model
    mean, cov = exact_posterior(model, x)
    z = torch.randn(3, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    log_post = torch.stack([
        torch.distributions.MultivariateNormal(mean[i], cov).log_prob(z[:, i]) for i in range(4)], dim=1)
    with torch.no_grad():
        bayes = model.log_joint(x, z) - exact_log_marginal(model, x)
    assert torch.allclose(log_post, bayes, atol=1e-10)


def test_encoder_at_posterior_gives_constant_weights_in_one_dimension():
    """With one latent the diagonal q can equal p(z|x): every log-weight is then log p(x)."""
    from deepem.models.linear_gaussian import linear_gaussian_model

    model = linear_gaussian_model(4, 1, generator=torch.Generator().manual_seed(3))
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    set_encoder_to_posterior(model)
    with torch.no_grad():
        log_w = draw(model, x, 7).log_w
        exact = exact_log_marginal(model, x)
    assert torch.allclose(log_w, exact.expand_as(log_w), atol=1e-9)
    assert not math.isnan(float(exact.sum()))
