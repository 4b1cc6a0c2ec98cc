"""Early stopping (config.patience): a run whose validation curve peaks stops `patience` validations after
the peak, keeps the peak's parameters for evaluation, and ends the same when interrupted and resumed."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
import torch
from training_helpers import assert_trees_equal, tiny_config

from deepem.training.checkpoint_file import list_checkpoints, load_checkpoint
from deepem.training.config import ConfigError
from deepem.training.signals import StopRequest
from deepem.training.state import TrainingInterrupted
from deepem.training.trainer import Trainer
from deepem.workflows.assembly import build_trainer
from deepem.workflows.loading import load_trained_run

#: the validation bound after each epoch: peaks at epoch 3, and 6 would be better still
PEAKED = {1: -10.0, 2: -8.0, 3: -7.0, 4: -7.5, 5: -7.2, 6: -6.0, 7: -5.0, 8: -4.0}


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def make_trainer(run_dir, curve: dict[int, float], snapshots: dict[int, dict], stop: StopRequest | None = None,
                 batch_hook=None, **changes) -> Trainer:
    """A tiny IWAE run on digits (5 steps an epoch) whose validator reads `curve` at the epoch just ended and
    records the parameters it saw."""
    config = tiny_config(**{"epochs": 8, "patience": 2, "checkpoint_every_steps": 0, **changes})
    trainer = build_trainer(config, run_dir, log=lambda s: None, progress=False, stop=stop,
                            batch_hook=batch_hook)

    def validate(model):
        snapshots[trainer.state.epoch] = params(model)
        return SimpleNamespace(mean=curve[trainer.state.epoch], stderr=0.0, estimator="fake")

    trainer.validate = validate
    return trainer


def test_a_peaked_curve_stops_patience_validations_after_the_peak_with_the_peak_parameters(tmp_path):
    snapshots: dict[int, dict] = {}
    trainer = make_trainer(tmp_path / "run", PEAKED, snapshots)
    trainer.start()
    summary = trainer.fit()
    # best at 3; epochs 4 and 5 bring nothing better: two stale validations = patience
    assert (summary["epochs"], summary["steps"], summary["best_epoch"]) == (5, 25, 3)
    assert summary["stopped_early"] and summary["best_valid"] == -7.0
    assert sorted(snapshots) == [1, 2, 3, 4, 5]
    assert_trees_equal(params(trainer.model), snapshots[3])
    assert any(not torch.equal(snapshots[3][k], snapshots[5][k]) for k in snapshots[3])  # training moved on
    # the last checkpoint is the state at epoch 5 (resumable), with the best parameters beside it
    ckpt = load_checkpoint(list_checkpoints(trainer.run.checkpoints)[-1])
    assert ckpt["train_state"]["epoch"] == 5 and ckpt["train_state"]["stale_validations"] == 2
    assert_trees_equal(ckpt["model"], snapshots[5])
    assert_trees_equal(ckpt["best"]["model"], snapshots[3])
    # evaluation (evaluate, impute, compare) loads the best parameters
    trained = load_trained_run(tmp_path / "run", warn=lambda s: None)
    assert_trees_equal(params(trained.model), snapshots[3])


def test_an_improving_curve_runs_every_epoch_and_keeps_the_last_parameters(tmp_path):
    snapshots: dict[int, dict] = {}
    rising = {e: float(e) for e in range(1, 9)}
    trainer = make_trainer(tmp_path / "run", rising, snapshots)
    trainer.start()
    summary = trainer.fit()
    assert (summary["epochs"], summary["best_epoch"], summary["stopped_early"]) == (8, 8, False)
    assert_trees_equal(params(trainer.model), snapshots[8])


def test_without_patience_nothing_stops_and_no_best_copy_is_kept(tmp_path):
    snapshots: dict[int, dict] = {}
    trainer = make_trainer(tmp_path / "run", PEAKED, snapshots, patience=0)
    trainer.start()
    summary = trainer.fit()
    assert (summary["epochs"], summary["best_epoch"], summary["stopped_early"]) == (8, 8, False)
    assert "best" not in load_checkpoint(list_checkpoints(trainer.run.checkpoints)[-1])
    assert_trees_equal(params(trainer.model), snapshots[8])


def test_interrupted_and_resumed_early_stopping_ends_as_the_uninterrupted_run(tmp_path):
    whole: dict[int, dict] = {}
    reference = make_trainer(tmp_path / "whole", PEAKED, whole)
    reference.start()
    reference.fit()

    stop = StopRequest()

    def interrupt(step: int, x: torch.Tensor) -> torch.Tensor:
        if step == 17:  # in epoch 4: after the peak, before patience runs out
            stop.signum = signal.SIGTERM
        return x

    first: dict[int, dict] = {}
    trainer = make_trainer(tmp_path / "run", PEAKED, first, stop=stop, batch_hook=interrupt)
    trainer.start()
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    assert trainer.state.best_epoch == 3 and trainer.state.epoch == 3
    second: dict[int, dict] = {}
    resumed = make_trainer(tmp_path / "run", PEAKED, second)
    assert resumed.resume()
    summary = resumed.fit()
    assert (summary["epochs"], summary["best_epoch"], summary["stopped_early"]) == (5, 3, True)
    assert sorted(second) == [4, 5]  # the resumed run validated only the epochs after its checkpoint
    assert_trees_equal(params(resumed.model), whole[3])
    assert_trees_equal(second[5], whole[5])


def test_patience_needs_validation():
    with pytest.raises(ConfigError, match="invalid patience = 3: early stopping needs validation"):
        tiny_config(patience=3, valid_every=0).validate()
    with pytest.raises(ConfigError, match="invalid patience = -1: must be an integer >= 0"):
        tiny_config(patience=-1).validate()
    assert tiny_config().with_overrides({"patience": 4}).patience == 4  # a resumed run may change it
