"""The stacked sigmoid belief net (architecture "sbn"): its densities equal a direct per-layer computation
with torch.distributions, its samplers draw from those densities (checked against enumeration of every
state), log p(x) by enumeration is a normalised distribution over x and the IW estimate converges to it,
and the model refuses what it cannot do with one clear line."""

from __future__ import annotations

import json

import pytest
import torch
from torch.distributions import Bernoulli

from deepem.cli import main
from deepem.evaluation import iw_log_likelihood
from deepem.evaluation.ais import ais_log_likelihood
from deepem.evaluation.diagnostics import active_units_per_layer, kl_estimator, kl_to_prior
from deepem.inference.chained import ChainedBernoulli
from deepem.inference.distributions import NotReparameterizableError
from deepem.methods import make_method
from deepem.methods.base import IncompatibleModelError
from deepem.models import DeepLatentModel, ModelConfig, make_model
from deepem.models.config import describe
from deepem.models.enumeration import binary_states, exact_log_joint_table, exact_log_marginal

D, SIZES = 5, (3, 2)
TINY = ModelConfig(latent="bernoulli", likelihood="bernoulli", architecture="sbn",
                   architecture_options={"layer_sizes": list(SIZES)})


def tiny_model(seed: int = 0, sizes=SIZES, scale: float = 2.5) -> DeepLatentModel:
    """A tiny stacked SBN with sharp conditionals (weights scaled up), so that the posterior is far from
    the prior and q from the posterior: the checks below are not satisfied by a near-uniform model."""
    torch.manual_seed(seed)
    config = ModelConfig(latent="bernoulli", likelihood="bernoulli", architecture="sbn",
                         architecture_options={"layer_sizes": list(sizes)})
    model = make_model(config, D).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
        model.prior.logits.copy_(torch.linspace(-1.0, 1.5, sizes[-1], dtype=torch.float64))
    return model


def data(b: int = 6) -> torch.Tensor:
    return torch.bernoulli(torch.full((b, D), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(3))


def test_preset_is_the_papers_200_200_200_linear_sbn():
    model = make_model(ModelConfig(latent="bernoulli", architecture="sbn"), 784)
    assert model.latent_dim == 600 and model.latent_layers == (200, 200, 200)
    linear = lambda net: [(m.in_features, m.out_features) for m in net if isinstance(m, torch.nn.Linear)]  # noqa: E731
    assert len(list(model.modules())) == len([m for m in model.modules() if not isinstance(m, torch.nn.Tanh)])
    assert linear(model.encoder.first) == [(784, 200)]
    assert [linear(c) for c in model.encoder.conditionals] == [[(200, 200)], [(200, 200)]]
    assert [linear(c) for c in model.prior.conditionals] == [[(200, 200)], [(200, 200)]]
    assert linear(model.decoder.net) == [(200, 784)]
    assert model.prior.logits.shape == (200,)
    theta = set(map(id, model.generative_parameters()))
    assert set(map(id, model.prior.parameters())) <= theta
    assert not theta & set(map(id, model.encoder_parameters()))
    assert "sbn" in describe() and "Mnih" in describe()["sbn"]


def test_log_joint_and_log_q_equal_a_direct_per_layer_computation():
    model, x = tiny_model(sizes=(3, 2, 2)), data(4)
    q = model.encode(x)
    z = q.sample(7, torch.Generator().manual_seed(1))
    assert z.shape == (7, 4, 7) and set(z.unique().tolist()) == {0.0, 1.0}
    h1, h2, h3 = z[..., :3], z[..., 3:5], z[..., 5:]
    top_down = model.prior.conditionals  # h3 -> h2, h2 -> h1
    log_p = (Bernoulli(logits=model.prior.logits).log_prob(h3).sum(-1)
             + Bernoulli(logits=top_down[0](h3)).log_prob(h2).sum(-1)
             + Bernoulli(logits=top_down[1](h2)).log_prob(h1).sum(-1)
             + Bernoulli(logits=model.decoder.net(h1)).log_prob(x).sum(-1))
    bottom_up = model.encoder.conditionals  # h1 -> h2, h2 -> h3
    log_q = (Bernoulli(logits=model.encoder.first(x)).log_prob(h1).sum(-1)
             + Bernoulli(logits=bottom_up[0](h1)).log_prob(h2).sum(-1)
             + Bernoulli(logits=bottom_up[1](h2)).log_prob(h3).sum(-1))
    torch.testing.assert_close(model.log_joint(x, z), log_p)
    torch.testing.assert_close(q.log_prob(z), log_q)
    torch.testing.assert_close(model.prior.per_point(4, torch.float64, "cpu").log_prob(z), model.log_prior(z))


def empirical(draws: torch.Tensor) -> torch.Tensor:
    """Frequencies of the binary states of `draws` (N, Dz), in the order of binary_states."""
    index = (draws * 2 ** torch.arange(draws.shape[-1] - 1, -1, -1, dtype=draws.dtype)).sum(-1).long()
    return torch.bincount(index, minlength=2 ** draws.shape[-1]).double() / draws.shape[0]


def test_ancestral_draws_follow_the_densities():
    """Prior draws (top layer first) and q draws (bottom layer first) have the frequencies that
    exp(log_prob) gives every one of the 2^5 states: a sampler that filled the blocks in the wrong
    order, or conditioned on the wrong layer, would not."""
    model, x = tiny_model(), data(1)
    states = binary_states(sum(SIZES), torch.float64)
    n = 200_000
    g = torch.Generator().manual_seed(7)
    prior_probs = model.log_prior(states).exp().detach()
    q = model.encode(x)
    q_probs = q.log_prob(states.unsqueeze(1)).squeeze(1).exp().detach()
    for probs, draws in ((prior_probs, model.prior.sample(n, g)), (q_probs, q.sample(n, g).squeeze(1))):
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
        assert probs.max() > 0.15  # far from uniform (1/32)
        torch.testing.assert_close(empirical(draws), probs, atol=0.004, rtol=0)


def test_enumerated_marginal_is_a_distribution_over_x():
    """sum_x p(x) = 1 over all 2^5 binary x, p(x) = sum over the 2^5 latent states of p(x, h)."""
    model = tiny_model()
    xs = binary_states(D, torch.float64)
    assert exact_log_joint_table(model, xs).shape == (2 ** sum(SIZES), 2 ** D)
    assert float(exact_log_marginal(model, xs).detach().exp().sum()) == pytest.approx(1.0, abs=1e-12)


def test_iw_estimate_converges_to_enumeration():
    """The K-sample IW estimate against exact log p(x): per point within 4 standard errors, where the
    standard error sqrt(chi^2(p(h|x) || q) / K) of the log of a mean of weights is itself exact by
    enumeration; and far closer at K = 10^6 than at K = 2."""
    model, x = tiny_model(scale=1.5), data()
    exact = exact_log_marginal(model, x).detach()
    states = binary_states(sum(SIZES), torch.float64).unsqueeze(1).expand(-1, x.shape[0], -1)
    with torch.no_grad():
        log_q, log_post = model.encode(x).log_prob(states), model.log_joint(x, states) - exact
    chi2 = (2 * log_post - log_q).exp().sum(0) - 1  # E_q[(p(h|x)/q(h|x))^2] - 1
    assert chi2.min() > 1.0  # q is far from the posterior: the check has something to converge
    k = 1_000_000
    errors = iw_log_likelihood(model, x, k, seed=3).per_point - exact
    assert (errors.abs() < 4 * (chi2 / k).sqrt()).all(), (errors, (chi2 / k).sqrt())
    assert float(errors.abs().mean()) < 0.01
    assert float((iw_log_likelihood(model, x, 2, seed=3).per_point - exact).abs().mean()) > 0.3


def test_diagnostics_per_layer_and_monte_carlo_kl():
    model, x = tiny_model(sizes=(3, 2, 2)), data(20)
    assert len(active_units_per_layer(model, x)) == 3
    assert kl_estimator(model).startswith("Monte Carlo")
    # KL(q || p) by enumerating every state against the diagnostic's Monte Carlo estimate
    states = binary_states(7, torch.float64).unsqueeze(1).expand(-1, x.shape[0], -1)
    with torch.no_grad():
        log_q = model.encode(x).log_prob(states)
        exact = float((log_q.exp() * (log_q - model.log_prior(states))).sum(0).mean())
    assert kl_to_prior(model, x, draws=20_000) == pytest.approx(exact, abs=0.03)


@pytest.mark.parametrize("name", ["nvil", "vimco", "rws", "wake-sleep"])
def test_score_function_and_reweighted_methods_run(name):
    model, x = tiny_model(), data(4)
    method = make_method(name)
    method.bind(model)
    out = method(model, x)
    for loss in out.losses.values():
        assert torch.isfinite(loss)


@pytest.mark.parametrize("name", ["vae", "iwae", "iwae-dreg", "iwem", "aiwae", "rem-v1"])
def test_reparameterised_and_moment_matching_methods_refuse(name):
    with pytest.raises(IncompatibleModelError, match="methods that work with this model: .*rws"):
        make_method(name).bind(tiny_model())


def test_ais_refuses_binary_latents():
    with pytest.raises(ValueError, match="continuous latents"):
        ais_log_likelihood(tiny_model(), data(2))


@pytest.mark.parametrize("settings, message", [
    ({}, "add --latent bernoulli"),
    ({"latent": "bernoulli", "latent_dim": 7}, "latent_dim must be 5"),
    ({"latent": "bernoulli", "hidden": [8]}, "hidden does not apply"),
    ({"latent": "bernoulli", "architecture_options": {"layer_sizes": [3, 0]}}, "1 unit"),
    ({"latent": "bernoulli", "architecture_options": {"widths": [3]}}, "unknown architecture_options"),
])
def test_refusals(settings, message):
    options = {"architecture_options": {"layer_sizes": list(SIZES)}} | settings
    config = ModelConfig(architecture="sbn", **options)
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_command_line_trains_and_evaluates_a_stacked_sbn(tmp_path, capsys):
    out = tmp_path / "sbn"
    train = ["--threads", "1", "train", "--dataset", "digits", "--architecture", "sbn", "--architecture-option",
             "layer_sizes=[6,4,3]", "--method", "vimco", "--particles", "3", "--epochs", "1", "--train-limit", "40",
             "--valid-every", "0", "--out", str(out), "--quiet"]
    assert main(train) == 2  # without --latent bernoulli: one line saying so
    err = capsys.readouterr().err.strip()
    assert "add --latent bernoulli" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert main([*train, "--latent", "bernoulli"]) == 0
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["architecture"] == "sbn" and model["latent_dim"] == 13 and model["latent"] == "bernoulli"
    assert main(["--threads", "1", "evaluate", str(out), "--particles", "20", "--limit", "10", "--quiet"]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert len(record["active_units_per_layer"]) == 3 and record["log_likelihood"] < 0
    assert main(["--threads", "1", "evaluate", str(out), "--estimator", "ais", "--quiet"]) == 2
    assert "continuous latents" in capsys.readouterr().err


def test_chained_bernoulli_detach_mean_and_sizes():
    model, x = tiny_model(sizes=(3, 2, 2)), data(4)
    q = model.encode(x)
    z = q.sample(3, torch.Generator().manual_seed(0))
    params = model.encoder_parameters()
    assert all(g is not None and g.abs().sum() > 0 for g in torch.autograd.grad(q.log_prob(z).sum(), params))
    assert not q.detach().log_prob(z).requires_grad  # z is data, so nothing is left to differentiate
    torch.testing.assert_close(q.detach().log_prob(z), q.log_prob(z).detach())
    m1 = torch.sigmoid(model.encoder.first(x))
    m2 = torch.sigmoid(model.encoder.conditionals[0](m1))
    m3 = torch.sigmoid(model.encoder.conditionals[1](m2))
    torch.testing.assert_close(q.mean, torch.cat([m1, m2, m3], -1))  # the mean path
    with pytest.raises(ValueError, match="do not add up"):
        q.log_prob(z[..., :6])
    with pytest.raises(ValueError, match="needs as many sizes"):
        ChainedBernoulli(model.prior.logits, list(model.prior.conditionals), (2, 2))
    with pytest.raises(NotReparameterizableError):
        q.rsample(1)
