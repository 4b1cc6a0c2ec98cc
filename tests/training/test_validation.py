"""Nothing trusted blindly: bad settings, bad data and bad run folders fail at once, before anything
is written, with a message that names the field (or split, or folder) and what is allowed."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from training_helpers import binary_data, tiny_config

from deepem.data.base import DataSplits
from deepem.data.paths import DatasetNotFoundError
from deepem.models.config import ModelConfig
from deepem.training.config import ConfigError, TrainConfig
from deepem.training.datacheck import DataError
from deepem.training.run import RunFolder, RunFolderError
from deepem.workflows.assembly import build_trainer, resolve
from deepem.workflows.train import run_training

BAD_VALUES = [
    ("method", "nope", "invalid method = 'nope': must be one of aiwae,"),
    ("method_options", {"particles": 0}, "invalid particles = 0: must be an integer >= 1"),  # K: a method option
    ("method_options", {"particles": -3}, "invalid particles = -3: must be an integer >= 1"),
    ("method_options", {"particles": 2.5}, "invalid particles = 2.5: must be an integer >= 1"),
    ("method_options", {"particles": True}, "invalid particles = True: must be an integer >= 1"),
    ("lr", -1e-3, "invalid lr = -0.001: must be a positive finite number"),
    ("lr", 0.0, "invalid lr = 0.0: must be a positive finite number"),
    ("lr", float("nan"), "invalid lr = nan: must be a positive finite number"),
    ("lr", float("inf"), "invalid lr = inf: must be a positive finite number"),
    ("lr", "0.1", "invalid lr = '0.1': must be a positive finite number"),
    ("adam_eps", 0, "invalid adam_eps = 0: must be a positive finite number"),
    ("epochs", 0, "invalid epochs = 0: must be an integer >= 1"),
    ("batch_size", 0, "invalid batch_size = 0: must be an integer >= 1"),
    ("seed", -1, "invalid seed = -1: must be an integer >= 0"),
    ("schedule", "cosine", "invalid schedule = 'cosine': must be one of constant, burda"),
    ("nan_policy", "ignore", "invalid nan_policy = 'ignore': must be one of stop, skip, rollback"),
    ("max_rollbacks", -1, "invalid max_rollbacks = -1: must be an integer >= 0"),
    ("dtype", "float16", "invalid dtype = 'float16': must be one of float32, float64"),
    ("device", "tpu", "invalid device = 'tpu': must be cpu, cuda, cuda:N or mps"),
    ("keep_checkpoints", 0, "invalid keep_checkpoints = 0: must be an integer >= 1"),
    ("checkpoint_every_steps", -5, "invalid checkpoint_every_steps = -5: must be an integer >= 0"),
    ("valid_every", -1, "invalid valid_every = -1: must be an integer >= 0"),
    ("train_limit", 0, "invalid train_limit = 0: must be an integer >= 1 or None"),
    ("dataset", "nope", "invalid dataset = 'nope': unknown dataset; must be one of digits,"),
    ("model", ModelConfig(latent_dim=0), "invalid model.latent_dim = 0: must be an integer >= 1"),
    ("model", ModelConfig(hidden=[16, 0]), "invalid model.hidden = [16, 0]: must be a list of integers >= 1"),
    ("model", ModelConfig(activation="swish"), "invalid model.activation = 'swish': must be one of elu,"),
    ("model", ModelConfig(likelihood="poisson"), "invalid model.likelihood = 'poisson': must be one of bernoulli"),
    ("method_options", {"bogus": 1}, "invalid method_options = {'bogus': 1} for method 'iwae': "
                                     "method 'iwae' has no option bogus; its options are: particles"),
]


@pytest.mark.parametrize("name, value, message", BAD_VALUES, ids=[f"{n}={v!r}" for n, v, _ in BAD_VALUES])
def test_config_errors_name_the_field_and_the_allowed_values(tmp_path, name, value, message):
    config = dataclasses.replace(tiny_config(), **{name: value})
    with pytest.raises(ConfigError) as info:
        resolve(config)  # the config's own checks, then names against the registries
    assert message in str(info.value)
    with pytest.raises(ConfigError):  # the trainer validates before writing anything
        run_training(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_method_option_values_are_checked_by_the_method():
    config = tiny_config(method="iwem", method_options={"alpha_unit": "fortnights"})
    with pytest.raises(ConfigError, match=r"'iwem': invalid alpha_unit = 'fortnights': must be one of updates, epochs"):
        build_trainer(config, "unused", data=binary_data(), progress=False)  # the method, built once, checks it
    with pytest.raises(ConfigError, match=r"for method 'iwem': invalid alpha_step = 'fast': must be a number >= 0"):
        resolve(tiny_config(method="iwem", method_options={"alpha_step": "fast"}))  # its declared type


def test_from_dict_rejects_unknown_fields():
    good = tiny_config().to_dict()
    assert TrainConfig.from_dict(good) == tiny_config()
    with pytest.raises(ConfigError, match=r"unknown config fields \['learning_rate'\]; known fields: \["):
        TrainConfig.from_dict({**good, "learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"unknown model fields \['depth'\]"):
        TrainConfig.from_dict({**good, "model": {**good["model"], "depth": 3}})
    with pytest.raises(ConfigError, match="must be a dictionary of fields, got list"):
        TrainConfig.from_dict([1, 2])


def test_resume_may_change_only_what_does_not_alter_past_steps():
    config = tiny_config()
    assert config.with_overrides({"epochs": 5, "nan_policy": "skip"}).epochs == 5
    with pytest.raises(ConfigError, match="cannot change lr, method when resuming a run"):
        config.with_overrides({"lr": 1.0, "method": "vae"})


# data ------------------------------------------------------------------------------------------------
def _splits(**changes) -> DataSplits:
    return dataclasses.replace(binary_data(), **changes)


def _with_nan() -> DataSplits:
    d = binary_data()
    train = d.train.clone()
    train[7, 3] = float("nan")
    train[9, 0] = float("inf")
    return dataclasses.replace(d, train=train)


BAD_DATA = [
    ("nan", _with_nan, "train split contains 2 NaN/inf values in 2 rows (first rows [7, 9]); remove or impute"),
    ("3-d", lambda: _splits(train=torch.zeros(10, 4, 4)),
     "train split: expected a matrix shaped (points, features), got shape (10, 4, 4); flatten"),
    ("int dtype", lambda: _splits(train=torch.zeros(10, 16, dtype=torch.int64)),
     "train split: expected floating-point values, got dtype torch.int64; convert with x.float()"),
    ("numpy", lambda: _splits(valid=binary_data().valid.numpy()),
     "valid split: expected a torch.Tensor, got ndarray"),
    ("columns", lambda: _splits(test=torch.zeros(5, 15)),
     "test split has 15 features but the training split has 16"),
    ("not binary", lambda: _splits(valid=torch.full((5, 16), 0.5)),
     "valid split: a Bernoulli likelihood needs binary data (0 or 1), got values in [0.5, 0.5]"),
    ("grey out of range", lambda: _splits(train=torch.full((10, 16), 2.0), dynamic_binarization=True),
     "train split: dynamic binarisation needs grey levels in [0, 1], got values in [2, 2]"),
    ("empty train", lambda: _splits(train=torch.zeros(0, 16)), "train split is empty"),
    ("empty valid", lambda: _splits(valid=torch.zeros(0, 16)), "valid split is empty but validation is on"),
]


@pytest.mark.parametrize("kind, make, message", BAD_DATA, ids=[k for k, _, _ in BAD_DATA])
def test_bad_data_is_refused_naming_split_and_problem(tmp_path, kind, make, message):
    with pytest.raises(DataError) as info:
        build_trainer(tiny_config(), tmp_path / "run", data=make(), progress=False)
    assert message in str(info.value)


def test_missing_data_file_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        run_training(tiny_config(dataset="binarized-mnist", data_dir=str(tmp_path)), tmp_path / "run",
                     progress=False)
    assert str(tmp_path / "binarized_mnist.npz") in str(info.value)
    assert not (tmp_path / "run").exists()


# run folders -------------------------------------------------------------------------------------------
def test_run_folder_is_never_overwritten_without_force(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.create()
    run.write_config({"x": 1})
    (run.root / "keep.txt").write_text("precious")
    with pytest.raises(RunFolderError, match="already exists and is not empty; pass --force to overwrite it or "
                                             "--resume"):
        run.create()
    assert (run.root / "keep.txt").read_text() == "precious"
    run.create(force=True)
    assert not (run.root / "keep.txt").exists()


def test_force_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_text("meow")
    with pytest.raises(RunFolderError, match="is not a deepem run \\(no config.json\\); refusing to delete it"):
        RunFolder(folder).create(force=True)
    assert (folder / "cat.jpg").exists()
    with pytest.raises(RunFolderError, match="is not a deepem run folder"):
        run_training(None, folder, resume=True, progress=False)
    with pytest.raises(RunFolderError, match="does not exist, so it is not a deepem run folder"):
        run_training(None, tmp_path / "nowhere", resume=True, progress=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        RunFolder(tmp_path / "afile").create()


def test_a_run_in_use_is_locked(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.create()
    run.write_config({})
    with run.lock():
        with pytest.raises(RunFolderError, match="in use by another deepem process"):
            with RunFolder(run.root).lock():
                pass
        with pytest.raises(RunFolderError, match="in use"):
            run.create(force=True)
    with run.lock():  # released on exit
        pass


def test_resume_refuses_a_different_configuration(tmp_path):
    config = tiny_config(epochs=1)
    assert run_training(config, tmp_path / "run", progress=False, data=binary_data(), log=lambda s: None) == 0
    other = build_trainer(tiny_config(epochs=1, lr=0.5), tmp_path / "run", data=binary_data(), progress=False)
    with pytest.raises(ConfigError, match="lr: run has 0.003, given 0.5"):
        other.resume()
    with pytest.raises(ConfigError, match="cannot change lr"):
        run_training(None, tmp_path / "run", resume=True, overrides={"lr": 0.5}, data=binary_data())
    logs: list[str] = []  # a permitted change: train one more epoch
    assert run_training(None, tmp_path / "run", resume=True, overrides={"epochs": 2}, data=binary_data(),
                        progress=False, log=logs.append) == 0
    assert "resumed from ckpt-000000005.pt" in logs[0] and "trained 2 epochs (10 steps)" in logs[-1]
