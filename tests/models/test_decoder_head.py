"""A decoder states its body and linear output head (`models.networks.MLP`), the model hands the head to the
likelihood by that statement alone, and checkpoints written before the statement existed still load."""

from __future__ import annotations

import pytest
import torch
from tests.methods.golden.record import RECORD, make_model_and_data
from torch import nn

from deepem.models import MLP, BernoulliLikelihood, DeepLatentModel, GaussianEncoder, mlp


def test_a_state_dict_of_the_old_layout_loads_with_the_same_parameter_names():
    """The golden record's state dict was saved when the decoder was a plain nn.Sequential."""
    old = torch.load(RECORD, weights_only=True)["state_dict"]
    model, _ = make_model_and_data()
    assert isinstance(model.decoder, MLP)
    assert list(model.state_dict()) == list(old)
    assert {"decoder.0.weight", "decoder.2.bias"} <= set(old)
    model.load_state_dict(old)  # strict
    assert torch.equal(model.decoder.head.weight, old["decoder.2.weight"])


class Spy(BernoulliLikelihood):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def log_prob(self, x, out, mask=None):
        self.calls.append("whole")
        return super().log_prob(x, out, mask)

    def log_prob_linear(self, x, h, layer, mask=None):
        self.calls.append("head")
        return super().log_prob_linear(x, h, layer, mask)


def test_the_head_goes_to_the_likelihood_only_when_the_decoder_states_it():
    torch.manual_seed(0)
    net = mlp(3, [5], 6)
    plain = nn.Sequential(*net)  # the same layers, with no stated head: it runs whole
    z = torch.randn(2, 4, 3)
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    values = {}
    for name, decoder in (("mlp", net), ("plain", plain)):
        likelihood = Spy()
        model = DeepLatentModel(decoder, likelihood, GaussianEncoder(6, 3, [5]), 3, 6)
        values[name] = model.log_likelihood(x, z)
        assert likelihood.calls == (["head"] if name == "mlp" else ["whole"])
    torch.testing.assert_close(values["mlp"], values["plain"], rtol=1e-6, atol=1e-6)
    assert torch.equal(net.body(z), net[:-1](z))


def test_an_mlp_must_end_in_its_linear_head():
    with pytest.raises(TypeError, match="linear output head"):
        MLP(nn.Linear(2, 3), nn.Tanh())
