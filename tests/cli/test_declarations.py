"""The torch-free declarations the CLI's parser is built from (deepem/declarations) name exactly what the
registries hold (tests/cli/test_registry_facts.py checks every such name), and the classes that act on the
settings derive from them (each setting declared once)."""

from __future__ import annotations

import dataclasses

from deepem.declarations import model, run
from deepem.models.config import ModelConfig
from deepem.settings import declared
from deepem.training.config import TrainConfig


def test_the_configurations_are_their_declarations():
    assert issubclass(TrainConfig, run.RunSettings) and issubclass(ModelConfig, model.ModelSettings)
    for cls, declaration in ((TrainConfig, run.RunSettings), (ModelConfig, model.ModelSettings)):
        assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in dataclasses.fields(declaration)]
    assert declared(TrainConfig)["epochs"] == declared(run.RunSettings)["epochs"]
    assert isinstance(TrainConfig().model, ModelConfig) and TrainConfig().model.latent_dim == 50
