"""A run with a non-default architecture end to end, as the CLI will drive it: trained from a TrainConfig
on binarised MNIST (28x28), rebuilt from its config.json for evaluation, with per-layer diagnostics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deepem.models import ModelConfig
from deepem.training.config import TrainConfig
from deepem.workflows import evaluate_run, run_training

ARCHITECTURES = {
    "conv": ModelConfig(architecture="conv", latent_dim=4, architecture_options={
        "encoder_layers": [[4, 7, 1, 3], [4, 3, 2, 1], [8, 5, 1, 2], [8, 3, 2, 1], [2, 3, 1, 1]],
        "channels": 8, "depth": 2}),
    "mlp-2layer": ModelConfig(architecture="mlp-2layer", hidden=[16],
                              architecture_options={"layer_sizes": [4, 2], "between": [8]}),
}


@pytest.fixture
def data_dir() -> str:
    path = os.environ.get("DEEPEM_DATA")
    if not path or not (Path(path) / "binarized_mnist.npz").exists():
        pytest.skip("no benchmark data: set DEEPEM_DATA to the folder with binarized_mnist.npz")
    return path


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_train_and_evaluate_a_run(tmp_path, data_dir, name):
    config = TrainConfig(dataset="binarized-mnist", data_dir=data_dir, method="iwae", method_options={"particles": 2},
                         model=ARCHITECTURES[name], epochs=1, batch_size=20, train_limit=40, valid_every=0,
                         seed=1)
    assert run_training(config, tmp_path / "run", progress=False, log=lambda s: None) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert saved["architecture"] == name
    assert saved["architecture_options"] == ARCHITECTURES[name].architecture_options
    record = evaluate_run(tmp_path / "run", particles=3, limit=10, progress=False)
    layers = 2 if name == "mlp-2layer" else 1
    assert len(record["active_units_per_layer"]) == layers and record["log_likelihood"] < 0
