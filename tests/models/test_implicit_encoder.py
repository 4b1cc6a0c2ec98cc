"""An implicit q (z = f(x, ε), no density): the IW evaluator refuses with the way out, AIS from the
prior works (on the linear-Gaussian decoder it reaches the exact log p(x)), and methods that need
log q refuse before training."""

from __future__ import annotations

import pytest
import torch

from deepem.evaluation import active_units, ais_log_likelihood, iw_log_likelihood, kl_to_prior
from deepem.inference.distributions import DensityUnavailableError
from deepem.methods import make_method
from deepem.methods.base import IncompatibleModelError
from deepem.models import DeepLatentModel, ImplicitEncoder, ModelConfig, make_model
from deepem.models.linear_gaussian import exact_log_marginal, linear_gaussian_model


@pytest.fixture
def implicit_lg():
    g = torch.Generator().manual_seed(3)
    lg = linear_gaussian_model(4, 2, noise_std=0.7, generator=g)
    model = DeepLatentModel(lg.decoder, lg.likelihood, ImplicitEncoder(4, 2, hidden=[8]).double(), 2, 4)
    with torch.no_grad():
        x = lg.decoder(torch.randn(5, 2, generator=g, dtype=torch.float64))
        x += 0.7 * torch.randn(5, 4, generator=g, dtype=torch.float64)
    return model, x, lg


def test_iw_evaluation_refuses_and_points_to_ais(implicit_lg):
    model, x, _ = implicit_lg
    with pytest.raises(DensityUnavailableError, match="--estimator ais --ais-initial prior"):
        iw_log_likelihood(model, x, 10)


def test_ais_from_the_prior_reaches_the_exact_marginal(implicit_lg):
    """AIS from the prior never touches the encoder: it equals the run on the same decoder with a
    Gaussian encoder, and it is close to the exact log p(x) (a lower bound up to Monte Carlo error)."""
    model, x, lg = implicit_lg
    settings = dict(chains=64, temperatures=200, leapfrog_steps=5, initial="prior", seed=0)
    est = ais_log_likelihood(model, x, **settings).per_point
    assert torch.equal(est, ais_log_likelihood(lg, x, **settings).per_point)
    error = est - exact_log_marginal(model, x).detach()
    assert float(error.abs().mean()) < 0.06 and float(error.abs().max()) < 0.15
    with pytest.raises(ValueError, match="--ais-initial prior"):
        ais_log_likelihood(model, x, chains=2, temperatures=3, initial="encoder")


def test_implicit_q_samples_with_gradient_but_has_no_density(implicit_lg):
    model, x, _ = implicit_lg
    q = model.encode(x)
    z = q.rsample(3)
    assert z.shape == (3, 5, 2) and z.requires_grad
    assert not q.sample(3).requires_grad
    with pytest.raises(DensityUnavailableError, match="no density"):
        q.log_prob(z)
    assert q.mean.shape == (5, 2)
    assert active_units(model, x) >= 0
    assert kl_to_prior(model, x) != kl_to_prior(model, x)  # NaN: not available without a density


@pytest.mark.parametrize("name", ["vae", "iwae", "rws", "rem-v1", "iwem", "aiwae"])
def test_methods_that_need_log_q_refuse_an_implicit_encoder(implicit_lg, name):
    model, _, _ = implicit_lg
    with pytest.raises(IncompatibleModelError, match="density log q"):
        make_method(name).bind(model)


def test_implicit_encoder_from_config():
    model = make_model(ModelConfig(latent_dim=3, hidden=[8], encoder="implicit", noise_dim=5), 6)
    assert isinstance(model.encoder, ImplicitEncoder) and model.encoder.noise_dim == 5
    default = make_model(ModelConfig(latent_dim=3, hidden=[8], encoder="implicit"), 6)
    assert default.encoder.noise_dim == 32  # IWAVB's setting (sec. 5), whatever the latent width
    assert default.encoder.net[0].in_features == 6 + 32  # ε enters at the input, beside x
    with pytest.raises(ValueError, match="continuous latents"):
        ModelConfig(latent="bernoulli", encoder="implicit").validate()
