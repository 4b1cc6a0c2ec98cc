"""AIS log-likelihood evaluation: accuracy against the exact log p(x) of the linear-Gaussian model and
against a near-exact importance-sampling value for a small Bernoulli model; labels, settings, seeding,
progress reporting and errors."""

from __future__ import annotations

import re

import pytest
import torch

from deepem.errors import UserError
from deepem.evaluation import EstimatorSettingError, ais_log_likelihood
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.models.config import ModelConfig, make_model
from deepem.models.linear_gaussian import exact_log_marginal, linear_gaussian_model, set_encoder_to_posterior


@pytest.fixture(scope="module")
def lg():
    gen = torch.Generator().manual_seed(21)
    model = linear_gaussian_model(data_dim=5, latent_dim=2, noise_std=0.5, generator=gen)
    x = model.sample(8, gen, mean=False)
    return model, x, exact_log_marginal(model, x).detach()


def test_prior_start_matches_exact_log_marginal(lg):
    model, x, exact = lg
    done = []
    est = ais_log_likelihood(model, x, chains=16, temperatures=200, leapfrog_steps=5, batch_size=5,
                             seed=3, progress=done.append)
    err = est.per_point - exact
    assert est.per_point.shape == (8,) and est.per_point.dtype == torch.float64
    assert float(err.abs().mean()) < 0.15, err
    assert abs(est.mean - float(exact.mean())) < 0.1
    # progress after every transition (T - 2 per batch: the one at β = 1 is skipped), in fractions of the
    # batch's points that add up to its size
    assert len(done) == 2 * 198
    assert abs(sum(done[:198]) - 5) < 1e-9 and abs(sum(done) - 8) < 1e-9
    assert est.estimator == "AIS, T=200, chains=16, L=5, from prior"
    s = est.settings
    assert (s["chains"], s["temperatures"], s["leapfrog_steps"], s["schedule"], s["initial"], s["seed"]) == (
        16, 200, 5, "sigmoid", "prior", 3)
    assert 0.4 < s["mean_acceptance"] < 0.95
    assert 1.0 <= s["mean_ess"] <= 16.0
    assert est.summary()["estimator"] == est.estimator


def test_encoder_start_is_accurate_with_few_temperatures(lg):
    """A good q0 needs far fewer temperatures: from the (diagonal) posterior, 30 are plenty."""
    model, x, exact = lg
    set_encoder_to_posterior(model, std_scale=1.2)
    est = ais_log_likelihood(model, x, chains=16, temperatures=30, leapfrog_steps=5, initial="encoder",
                             step_size=0.3)
    assert float((est.per_point - exact).abs().max()) < 0.1
    assert est.estimator.endswith("from encoder")


def test_seeded_and_reproducible(lg):
    model, x, _ = lg
    a = ais_log_likelihood(model, x[:3], chains=4, temperatures=10, leapfrog_steps=2, seed=7)
    b = ais_log_likelihood(model, x[:3], chains=4, temperatures=10, leapfrog_steps=2, seed=7)
    c = ais_log_likelihood(model, x[:3], chains=4, temperatures=10, leapfrog_steps=2, seed=8)
    assert torch.equal(a.per_point, b.per_point)
    assert not torch.equal(a.per_point, c.per_point)


def test_bernoulli_model_agrees_with_large_k_importance_sampling():
    """A 2-latent Bernoulli MLP: with 50,000 importance samples the IW estimate is essentially exact,
    and AIS must agree with it."""
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=2, hidden=[16]), data_dim=12).double()
    gen = torch.Generator().manual_seed(1)
    x = model.sample(5, gen, mean=False)
    reference = iw_log_likelihood(model, x, particles=50_000, seed=1).per_point
    est = ais_log_likelihood(model, x, chains=16, temperatures=150, leapfrog_steps=5, seed=2)
    assert float((est.per_point - reference).abs().max()) < 0.06, est.per_point - reference


def test_bad_settings_are_named(lg):
    """One line naming the setting, a UserError (the CLI prints it, exit 2) that is also a ValueError."""
    model, x, _ = lg
    cases = [({"initial": "posterior"}, "invalid ais setting initial = 'posterior': must be one of prior, encoder"),
             ({"temperatures": 1}, "invalid ais setting temperatures = 1: must be an integer >= 2"),
             ({"chains": 0}, "invalid ais setting chains = 0: must be an integer >= 1"),
             ({"schedule": "cosine"}, "invalid ais setting schedule = 'cosine': must be one of linear, sigmoid"),
             ({"step_size": 0.0}, "invalid ais setting step_size = 0.0: must be a positive finite number"),
             ({"target_acceptance": 1.0}, "invalid ais setting target_acceptance = 1.0: must be a number > 0 and < 1"),
             ({"leapfrog": 3}, "unexpected keyword argument 'leapfrog'")]
    for settings, message in cases:
        with pytest.raises(EstimatorSettingError, match=re.escape(message)) as err:
            ais_log_likelihood(model, x, **settings)
        assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"expected data shaped \(batch, 5\)"):
        ais_log_likelihood(model, x[:, :3])
