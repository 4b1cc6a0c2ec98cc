"""Two stochastic layers (mlp-2layer): the densities equal a direct computation from torch.distributions
per layer, the chained q's rsample / detach / mean do what they say, and the refusals are clear."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from deepem.methods import make_method
from deepem.methods.base import IncompatibleModelError, draw
from deepem.models import DeepLatentModel, ModelConfig, make_model

D, D1, D2 = 12, 3, 2
TINY = ModelConfig(hidden=[8], likelihood="bernoulli", architecture="mlp-2layer",
                   architecture_options={"layer_sizes": [D1, D2], "between": [6]})


def tiny_model(seed: int = 0) -> DeepLatentModel:
    torch.manual_seed(seed)
    return make_model(TINY, D).double()


def data(b: int = 4) -> torch.Tensor:
    return torch.bernoulli(torch.full((b, D), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(3))


def normal_of(net: torch.nn.Module, h: torch.Tensor) -> Normal:
    """The diagonal Gaussian a layer's raw network output describes: first half mean, second log std."""
    mean, log_std = net(h).chunk(2, dim=-1)
    return Normal(mean, log_std.exp())


def test_preset_sizes_follow_burda():
    model = make_model(ModelConfig(architecture="mlp-2layer"), 784)
    assert model.latent_dim == 150 and model.latent_layers == (100, 50)
    widths = lambda net: [m.out_features for m in net if isinstance(m, torch.nn.Linear)]  # noqa: E731
    assert widths(model.encoder.first.net) == [200, 200, 200]  # x -> 200 -> 200 -> (mean, log std) of z1
    assert widths(model.encoder.second.net) == [100, 100, 100]  # z1 -> 100 -> 100 -> z2's (mean, log std)
    assert widths(model.prior.conditional.net) == [100, 100, 200]  # z2 -> 100 -> 100 -> z1's
    assert widths(model.decoder.net) == [200, 200, 784]  # z1 -> 200 -> 200 -> x logits
    assert set(map(id, model.prior.parameters())) <= set(map(id, model.generative_parameters()))


def test_log_joint_and_log_q_equal_direct_computation():
    model, x = tiny_model(), data()
    q = model.encode(x)
    z = q.rsample(5, torch.Generator().manual_seed(1))
    assert z.shape == (5, 4, D1 + D2)
    z1, z2 = z[..., :D1], z[..., D1:]
    log_p = (Normal(0.0, 1.0).log_prob(z2).sum(-1) + normal_of(model.prior.conditional.net, z2).log_prob(z1).sum(-1)
             + Bernoulli(logits=model.decoder.net(z1)).log_prob(x).sum(-1))
    log_q = (normal_of(model.encoder.first.net, x).log_prob(z1).sum(-1)
             + normal_of(model.encoder.second.net, z1).log_prob(z2).sum(-1))
    torch.testing.assert_close(model.log_joint(x, z), log_p)
    torch.testing.assert_close(q.log_prob(z), log_q)
    # the prior as AIS's start: same density, and its draws are ancestral (z2 first, then z1 | z2)
    start = model.prior.per_point(4, torch.float64, "cpu")
    torch.testing.assert_close(start.log_prob(z), model.log_prior(z))


def test_rsample_draws_z1_then_z2_given_z1():
    model, x = tiny_model(), data()
    g = torch.Generator().manual_seed(7)
    z = model.encode(x).rsample(3, g)
    g = torch.Generator().manual_seed(7)
    first = normal_of(model.encoder.first.net, x)
    z1 = first.loc + first.scale * torch.randn((3, 4, D1), generator=g, dtype=torch.float64)
    second = normal_of(model.encoder.second.net, z1)
    z2 = second.loc + second.scale * torch.randn((3, 4, D2), generator=g, dtype=torch.float64)
    torch.testing.assert_close(z, torch.cat([z1, z2], -1))


def test_detached_q_has_gradient_through_z_only():
    model, x = tiny_model(), data()
    q = model.encode(x)
    z = q.rsample(2)
    frozen = q.detach().log_prob(z)
    torch.testing.assert_close(frozen, q.log_prob(z))
    params = model.encoder_parameters()
    # through z: every encoder parameter gets gradient; with z fixed, none does
    through_z = torch.autograd.grad(frozen.sum(), params, retain_graph=True, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in through_z)
    fixed = q.detach().log_prob(z.detach())
    assert not fixed.requires_grad
    # STL's particles: log q evaluated with parameters stopped, still differentiable in φ via z
    part = draw(model, x, 3, stop_q_params=True)
    assert part.log_q.requires_grad


def test_mean_is_the_mean_path():
    model, x = tiny_model(), data()
    mean = model.encode(x).mean
    m1 = normal_of(model.encoder.first.net, x).loc
    torch.testing.assert_close(mean, torch.cat([m1, normal_of(model.encoder.second.net, m1).loc], -1))


def test_decoder_reads_z1_only_and_prior_samples_ancestrally():
    model = tiny_model()
    z = torch.randn(2, 4, D1 + D2, dtype=torch.float64)
    changed = z.clone()
    changed[..., D1:] += 5.0
    torch.testing.assert_close(model.decoder(z), model.decoder(changed))
    g = torch.Generator().manual_seed(0)
    draws = model.sample_prior(4000, g)
    assert draws.shape == (4000, D1 + D2)
    z2 = draws[:, D1:]
    assert abs(float(z2.mean())) < 0.05 and abs(float(z2.std()) - 1) < 0.05
    # z1 | z2 is N(m(z2), s(z2)^2): standardised residuals are N(0, 1)
    with torch.no_grad():
        mean, std = model.prior.conditional(z2)
    r = (draws[:, :D1] - mean) / std
    assert abs(float(r.mean())) < 0.05 and abs(float(r.std()) - 1) < 0.05


def test_refusals():
    with pytest.raises(ValueError, match="latent_dim must be 5"):
        make_model(ModelConfig(latent_dim=4, architecture="mlp-2layer",
                                                architecture_options={"layer_sizes": [3, 2]}), D)
    with pytest.raises(ValueError, match="unknown architecture_options \\['width'\\]"):
        ModelConfig(architecture="mlp-2layer", architecture_options={"width": 3}).validate()
    with pytest.raises(ValueError, match="mlp-2layer needs layer_sizes of two positive sizes, got \\[3, 2, 1\\]"):
        ModelConfig(architecture="mlp-2layer", architecture_options={"layer_sizes": [3, 2, 1]}).validate()
    with pytest.raises(ValueError, match="need architecture 'mlp'"):
        ModelConfig(architecture="mlp-2layer", latent="bernoulli").validate()
    with pytest.raises(ValueError, match="unknown model.architecture 'resnet'; choose one of mlp, mlp-2layer, conv"):
        ModelConfig(architecture="resnet").validate()
    # IWEM's widened proposal needs one diagonal Gaussian q: refused at bind, before any step
    method = make_method("iwem", particles=3, proposal_std_scale=1.5)
    with pytest.raises(IncompatibleModelError, match="proposal_std_scale=1.5.*HierarchicalEncoder"):
        method.bind(tiny_model())
    make_method("iwem", particles=3).bind(tiny_model())  # the plain proposal is fine
    make_method("iwem", particles=3, proposal_std_scale=1.5).bind(
        make_model(ModelConfig(latent_dim=2, hidden=[4]), D))  # and a diagonal q is fine


def test_default_architecture_is_todays_model():
    """ModelConfig() builds the same modules, in the same order (same seeded weights), as before."""
    config = ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli")
    assert config.architecture == "mlp" and config.architecture_options == {}
    torch.manual_seed(0)
    model = make_model(config, D)
    torch.manual_seed(0)
    decoder = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, D))
    encoder = torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.Tanh(), torch.nn.Linear(8, 6))
    for a, b in zip(list(decoder.parameters()) + list(encoder.parameters()), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert model.latent_layers == (3,)
