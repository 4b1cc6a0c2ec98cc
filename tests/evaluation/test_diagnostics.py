import math

import torch

from deepem.evaluation.diagnostics import active_units, kl_to_prior
from deepem.models.linear_gaussian import linear_gaussian_model


def test_kl_to_prior_closed_form_and_active_units():
    model = linear_gaussian_model(3, 2, generator=torch.Generator().manual_seed(0))
    layer = model.encoder.net[-1]
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[0, 0] = 1.0  # mean_0 = x_0: varies over data; mean_1 = 0: inactive
        layer.bias[2:] = math.log(0.5)  # std 0.5 in both latents
    x = torch.randn(2000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1 - log s^2) / 2 per latent
    expected = float((0.5 * (x[:, 0] ** 2 + 0.25 - 1 - math.log(0.25))).mean() + 0.5 * (0.25 - 1 - math.log(0.25)))
    assert abs(kl_to_prior(model, x) - expected) < 1e-9
    assert active_units(model, x) == 1


def test_evaluation_subset_is_fixed_random_and_nested():
    from deepem.evaluation.evaluate import evaluation_subset

    small, large = evaluation_subset(1000, 10), evaluation_subset(1000, 100)
    assert torch.equal(small, large[:10])  # a smaller limit is a prefix of a larger one
    assert torch.equal(small, evaluation_subset(1000, 10))
    assert not torch.equal(small, torch.arange(10))  # not the head of an ordered file
    assert len(set(large.tolist())) == 100 and int(large.max()) < 1000
    assert torch.equal(evaluation_subset(5, 10), torch.arange(5))
