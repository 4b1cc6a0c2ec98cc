"""Bad input to a model gets an error that says what is wrong."""

import pytest
import torch

from deepem.models import ModelConfig, make_model
from deepem.models.likelihoods import BernoulliLikelihood


def small_model(likelihood="bernoulli"):
    return make_model(ModelConfig(latent_dim=3, hidden=[8], likelihood=likelihood), 6)


def test_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"expected data shaped \(batch, 6\), got \(4, 7\)"):
        small_model().check_data(torch.zeros(4, 7))
    with pytest.raises(ValueError, match="flatten images"):
        small_model().check_data(torch.zeros(4, 2, 3))


def test_non_binary_data_for_bernoulli_is_rejected():
    with pytest.raises(ValueError, match="needs binary data.*0.5"):
        small_model().check_data(torch.full((4, 6), 0.5))
    small_model("gaussian").check_data(torch.full((4, 6), 0.5))  # fine for a Gaussian likelihood


def test_nan_in_data_is_rejected():
    x = torch.zeros(4, 6)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        small_model("gaussian").check_data(x)


def test_output_bias_starts_at_the_data_mean():
    mean = torch.tensor([0.1, 0.5, 0.9, 0.2, 0.3, 0.7])
    model = make_model(ModelConfig(latent_dim=3, hidden=[8]), 6, mean)
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(model.decoder[-1].bias), mean, atol=1e-6)


def test_bernoulli_log_prob_matches_torch_distributions():
    logits = torch.randn(3, 5, 6)
    x = torch.bernoulli(torch.full((5, 6), 0.4))
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x.expand(3, 5, 6)).sum(-1)
    assert torch.allclose(BernoulliLikelihood().log_prob(x, logits), expected, atol=1e-5)
