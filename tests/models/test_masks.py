"""Observed-data masks: on the linear-Gaussian model the masked likelihood gives the exact marginal of
the observed coordinates, and nothing computed depends on what fills the missing entries."""

from __future__ import annotations

import math

import pytest
import torch
from tests.methods.golden.record import CASES

from deepem.evaluation import iw_log_likelihood
from deepem.methods import make_method
from deepem.models import DeepLatentModel, ModelConfig, make_model
from deepem.models.linear_gaussian import linear_gaussian_model, set_encoder_to_posterior

D, DZ, NOISE = 5, 2, 0.5


def exact_observed_marginal(model: DeepLatentModel, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log N(x_o; b_o, W_o W_o^T + s^2 I) per row, each row with its own observed set."""
    w, b = model.decoder.weight, model.decoder.bias
    var = float(torch.exp(2 * model.likelihood.log_std.detach()))
    out = []
    for xi, mi in zip(x, mask, strict=True):
        wo, bo, xo = w[mi], b[mi], xi[mi]
        cov = wo @ wo.T + var * torch.eye(int(mi.sum()), dtype=w.dtype)
        out.append(torch.distributions.MultivariateNormal(bo, cov).log_prob(xo))
    return torch.stack(out)


@pytest.fixture
def lg():
    g = torch.Generator().manual_seed(7)
    model = linear_gaussian_model(D, DZ, noise_std=NOISE, generator=g)
    x = torch.randn(6, D, generator=g, dtype=torch.float64)
    mask = torch.rand(6, D, generator=g) < 0.6
    mask[:, 0] = True  # at least one observed coordinate per row
    mask[0] = True  # and one fully observed row
    return model, x, mask


def test_masked_joint_gives_the_exact_observed_marginal(lg):
    """log p(x_o) = log p(z) + log p(x_o | z) - log p(z | x_o) for every z: checked at random z with the
    exact posterior of the observed sub-model, so the masked likelihood must be exactly right."""
    model, x, mask = lg
    w, b = model.decoder.weight, model.decoder.bias
    var = float(torch.exp(2 * model.likelihood.log_std.detach()))
    z = torch.randn(3, x.shape[0], DZ, dtype=torch.float64)
    log_post = []
    for i in range(x.shape[0]):
        wo = w[mask[i]]
        prec = torch.eye(DZ, dtype=w.dtype) + wo.T @ wo / var
        cov = torch.linalg.inv(prec)
        mean = cov @ wo.T @ (x[i][mask[i]] - b[mask[i]]) / var
        log_post.append(torch.distributions.MultivariateNormal(mean, cov).log_prob(z[:, i]))
    identity = model.log_joint(x, z, mask) - torch.stack(log_post, dim=1)
    exact = exact_observed_marginal(model, x, mask)
    torch.testing.assert_close(identity, exact.expand_as(identity), rtol=1e-10, atol=1e-10)


def test_iw_estimate_with_a_mask_converges_to_the_observed_marginal(lg):
    model, x, mask = lg
    set_encoder_to_posterior(model, std_scale=2.0)  # a wide proposal: the zero-filled input shifts its mean
    exact = exact_observed_marginal(model, x, mask).detach()
    est = iw_log_likelihood(model, x, 20000, seed=0, mask=mask).per_point
    torch.testing.assert_close(est, exact, atol=0.02, rtol=0)
    garbage = x.masked_fill(~mask, float("nan"))
    assert torch.equal(iw_log_likelihood(model, garbage, 50, seed=1, mask=mask).per_point,
                       iw_log_likelihood(model, x, 50, seed=1, mask=mask).per_point)


def test_check_data_allows_nan_exactly_where_missing():
    model = make_model(ModelConfig(latent_dim=2, hidden=[4], likelihood="bernoulli"), 4)
    x = torch.tensor([[0.0, 1.0, float("nan"), 1.0]])
    mask = torch.tensor([[True, True, False, True]])
    model.check_data(x, mask)  # fine
    with pytest.raises(ValueError, match="pass an observed-data mask"):
        model.check_data(x)
    with pytest.raises(ValueError, match="marked observed by the mask are NaN"):
        model.check_data(x, torch.ones_like(mask))
    with pytest.raises(ValueError, match="binary data"):
        model.check_data(torch.tensor([[0.0, 0.5, float("nan"), 1.0]]), mask)
    with pytest.raises(ValueError, match="bool tensor shaped like the data"):
        model.check_data(x, mask.float())


NEW_CASES = [("vimco", "vimco", {"particles": 3}), ("nvil", "nvil", {"particles": 2}),
             ("wake-sleep", "wake-sleep", {}), ("avb", "avb", {}), ("iwavb", "iwavb", {"particles": 3}),
             ("iwavb-contrast", "iwavb", {"particles": 3, "adaptive_contrast": True}),
             ("miwae", "miwae", {"particles": 3}),
             ("miss-iwem", "miss-iwem", {"particles": 3, "p_samples": 4, "alpha_start": 0.5}),
             ("miss-iwem-woa-scaled", "miss-iwem-woa", {"particles": 3, "proposal_std_scale": 1.3}),
             ("miss-iwem-mean", "miss-iwem", {"particles": 3, "completion": "mean"})]


@pytest.mark.parametrize("label,name,options", CASES + NEW_CASES, ids=[c[0] for c in CASES + NEW_CASES])
@pytest.mark.parametrize("fill", [math.nan, 1e30, -math.inf])
def test_a_training_step_ignores_what_fills_missing_entries(label, name, options, fill):
    """Every method's losses and gradients are bitwise the same whatever the missing entries hold."""
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli"), 6).double()
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((4, 6), 0.4, dtype=torch.float64), generator=g)
    mask = torch.rand(4, 6, generator=g) < 0.7
    results = []
    for data in (x.masked_fill(~mask, 0.0), x.masked_fill(~mask, fill)):
        torch.manual_seed(3)  # the same networks for a method that owns some (nvil's baseline)
        method = make_method(name, **options).double()
        method.bind(model)
        torch.manual_seed(3)
        out = method(model, data, mask=mask)
        grads = []
        for group, loss in out.losses.items():
            params = {"theta": model.generative_parameters(), "phi": model.encoder_parameters(),
                      **method.extra_parameter_groups()}[group]
            grads += torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        results.append(([loss.detach() for loss in out.losses.values()], grads))
    (losses_a, grads_a), (losses_b, grads_b) = results
    assert all(torch.isfinite(v) and torch.equal(v, u) for v, u in zip(losses_a, losses_b, strict=True))
    for ga, gb in zip(grads_a, grads_b, strict=True):
        assert (ga is None and gb is None) or (torch.isfinite(ga).all() and torch.equal(ga, gb))
