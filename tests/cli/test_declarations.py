"""The torch-free declarations the CLI's parser is built from (deepem/declarations) name exactly what the
registries hold, and the classes that act on the settings derive from them (each setting declared once)."""

from __future__ import annotations

import dataclasses

from deepem.declarations import estimators, model, run
from deepem.evaluation.estimators import ESTIMATORS
from deepem.inference.adaptation import TARGET_ACCEPTANCE
from deepem.inference.temperatures import TEMPERATURE_SCHEDULES
from deepem.models.config import ARCHITECTURES, ENCODER_KINDS, LATENTS, ModelConfig
from deepem.models.likelihoods import LIKELIHOODS
from deepem.models.networks import ACTIVATIONS
from deepem.settings import declared
from deepem.training.config import DTYPES, TrainConfig
from deepem.training.schedules import LR_SCHEDULES


def test_the_declared_names_are_the_registries_names():
    assert model.ACTIVATION_NAMES == tuple(sorted(ACTIVATIONS))
    assert model.LIKELIHOOD_NAMES == tuple(sorted(LIKELIHOODS))
    assert model.ARCHITECTURE_NAMES == tuple(sorted(ARCHITECTURES))
    assert model.LATENT_NAMES == tuple(LATENTS) and model.ENCODER_KINDS == ENCODER_KINDS
    assert run.DTYPE_NAMES == tuple(DTYPES) and run.LR_SCHEDULES == LR_SCHEDULES
    assert estimators.ESTIMATOR_NAMES == tuple(ESTIMATORS)
    assert estimators.TEMPERATURE_SCHEDULE_NAMES == tuple(sorted(TEMPERATURE_SCHEDULES))
    assert estimators.TARGET_ACCEPTANCE == TARGET_ACCEPTANCE
    assert {name: e.Settings for name, e in ESTIMATORS.items()} == estimators.ESTIMATOR_SETTINGS


def test_the_configurations_are_their_declarations():
    assert issubclass(TrainConfig, run.RunSettings) and issubclass(ModelConfig, model.ModelSettings)
    for cls, declaration in ((TrainConfig, run.RunSettings), (ModelConfig, model.ModelSettings)):
        assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in dataclasses.fields(declaration)]
    assert declared(TrainConfig)["epochs"] == declared(run.RunSettings)["epochs"]
    assert isinstance(TrainConfig().model, ModelConfig) and TrainConfig().model.latent_dim == 50
