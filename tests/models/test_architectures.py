"""The architecture registry: names with one-line cited descriptions, builder options, and the choice
saved in (and restored from) a run's configuration."""

from __future__ import annotations

import json

import pytest
import torch

from deepem.evaluation.evaluate import evaluate_model
from deepem.models import ARCHITECTURES, ModelConfig, get_architecture, make_model
from deepem.models.config import describe
from deepem.training.config import ConfigError, TrainConfig


def test_registry_names_descriptions_and_options():
    assert list(ARCHITECTURES) == ["mlp", "mlp-2layer", "conv", "sbn"]
    text = describe()
    assert "Burda et al. 2015" in text["mlp"] and "sec. 5" in text["mlp-2layer"]
    assert "Tomczak & Welling 2017" in text["conv"]
    assert get_architecture("mlp").options() == []
    assert get_architecture("mlp-2layer").options() == ["layer_sizes", "between"]
    assert get_architecture("conv").options() == ["encoder_layers", "channels", "depth"]
    assert get_architecture("sbn").options() == ["layer_sizes", "between"]
    with pytest.raises(ValueError, match="unknown architecture_options \\['between'\\] for architecture 'mlp'; "
                                         "its options: none"):
        ModelConfig(architecture_options={"between": [4]}).validate()


def test_architecture_is_saved_in_the_run_config_and_checked():
    model = ModelConfig(hidden=[8], architecture="mlp-2layer", architecture_options={"layer_sizes": [3, 2]})
    assert model.latent_dim == 5
    config = TrainConfig(model=model)
    restored = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored.model == model
    assert restored.model.architecture == "mlp-2layer"
    assert restored.model.architecture_options == {"layer_sizes": [3, 2]}
    old = config.to_dict()  # a config written before the field existed reads as today's model
    del old["model"]["architecture"], old["model"]["architecture_options"]
    assert TrainConfig.from_dict(old).model.architecture == "mlp"
    with pytest.raises(ConfigError, match="unknown model.architecture 'resnet'"):
        TrainConfig(model=ModelConfig(architecture="resnet")).validate()


def test_evaluation_record_has_layers_and_the_kl_estimator():
    torch.manual_seed(0)
    config = ModelConfig(hidden=[8], likelihood="bernoulli", architecture="mlp-2layer",
                         architecture_options={"layer_sizes": [3, 2], "between": [4]})
    model = make_model(config, 12)
    x = torch.bernoulli(torch.full((30, 12), 0.4), generator=torch.Generator().manual_seed(0))
    record, _ = evaluate_model(model, x, particles=5, progress=False)
    assert len(record["active_units_per_layer"]) == 2
    assert sum(record["active_units_per_layer"]) == record["active_units"]
    assert record["kl_estimator"] == "Monte Carlo, 64 draws per point" and record["kl_to_prior"] > 0
    one_layer = make_model(ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli"), 12)
    record, _ = evaluate_model(one_layer, x, particles=5, progress=False)
    assert len(record["active_units_per_layer"]) == 1 and record["kl_estimator"] == "closed form"
