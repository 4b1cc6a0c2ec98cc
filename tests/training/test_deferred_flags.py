"""Under the device decision the loop reads no step's non-finite flag between record points: the
stepper keeps the steps' results and settles them all at the next metrics record, validation, checkpoint,
stop or end (training/steppers.py), and the policies act then, naming the step that failed. The host
decision (CPU's) settles every step when it is taken, as before. (Both decisions under every policy:
tests/training/test_nonfinite.py; here the reads themselves and the delay.)"""

from __future__ import annotations

import signal

import pytest
import torch
from host_reads import HostReadError, no_host_reads
from test_nonfinite import make_trainer, params, poison_at
from training_helpers import binary_data, tiny_config

from deepem.training import step as step_module
from deepem.training.checkpoint_file import checkpoint_step, list_checkpoints
from deepem.training.devices import StepDevice
from deepem.training.guards import NonFiniteError
from deepem.training.state import TrainingInterrupted
from deepem.training.steppers import SingleStepper
from deepem.workflows.assembly import build_trainer

POISON_STEP = 3  # records at every 2nd step (checkpoints) and at the epoch's end (step 5)


@pytest.fixture
def deciding_on(monkeypatch):
    """deciding_on(decision): every TrainStep built afterwards decides there (CPU tensors either way)."""
    def choose(decision: str) -> None:
        cpu = step_module.step_device("cpu")
        monkeypatch.setattr(step_module, "step_device", lambda device: StepDevice(cpu.kind, cpu.region, decision))
    return choose


@pytest.fixture
def steps_read_nothing(monkeypatch):
    """Every stepper step (the batch, the TrainStep, what the stepper keeps) runs with host reads refused;
    the record points run as they are."""
    taken = SingleStepper.step

    def guarded(self, batch):
        with no_host_reads():
            return taken(self, batch)
    monkeypatch.setattr(SingleStepper, "step", guarded)


def test_a_skipped_step_is_reported_with_its_step_at_the_next_record_point(tmp_path, deciding_on,
                                                                           steps_read_nothing):
    deciding_on("device")
    snapshots: dict[int, dict] = {}
    poison = poison_at({POISON_STEP})

    def hook(step, x):
        snapshots[step] = params(trainer)
        return poison(step, x)

    trainer = make_trainer(tmp_path, hook, nan_policy="skip")
    logged_at: list[int] = []
    trainer.log = lambda line: logged_at.append(trainer.state.step) if "step skipped" in line else None
    summary = trainer.fit()
    assert summary["skipped_steps"] == 1
    assert logged_at == [4]  # the record point after the step: the step-4 checkpoint
    skips = [r for r in trainer.run.read_metrics() if r["kind"] == "nonfinite"]
    assert [(r["action"], r["step"], r["epoch"], r["batch"]) for r in skips] == [("skip", 3, 0, 3)]
    assert skips[0]["what"].startswith("input batch (1 of 320 non-finite: 1 NaN")
    for k in snapshots[POISON_STEP]:  # the skipped step changed nothing; the next one did
        assert torch.equal(snapshots[POISON_STEP][k], snapshots[POISON_STEP + 1][k]), k
    assert not torch.equal(snapshots[POISON_STEP + 1]["decoder.0.weight"], snapshots[5]["decoder.0.weight"])
    # the windows hold the finite steps' values only: every record is finite
    assert all(r["loss_theta"] == r["loss_theta"] for r in trainer.run.read_metrics() if r["kind"] == "train")


def test_the_host_decision_reads_at_every_step_and_reports_at_once(tmp_path, deciding_on, steps_read_nothing):
    deciding_on("host")
    trainer = make_trainer(tmp_path, poison_at({POISON_STEP}), nan_policy="skip")
    with pytest.raises(HostReadError):  # (what the guard catches: the old device path read so too)
        trainer.fit()


def test_the_host_decision_reports_at_the_step(tmp_path, deciding_on):
    deciding_on("host")
    trainer = make_trainer(tmp_path, poison_at({POISON_STEP}), nan_policy="skip")
    logged_at: list[int] = []
    trainer.log = lambda line: logged_at.append(trainer.state.step) if "step skipped" in line else None
    trainer.fit()
    assert logged_at == [POISON_STEP]


def test_a_stopping_policy_stops_at_the_record_point_naming_the_step_and_writes_nothing_after_it(
        tmp_path, deciding_on, steps_read_nothing):
    deciding_on("device")
    trainer = make_trainer(tmp_path, poison_at({POISON_STEP}), nan_policy="stop")
    with pytest.raises(NonFiniteError) as info:
        trainer.fit()
    assert "epoch 0, batch 3 of 5 (step 3)" in str(info.value) and "input batch" in str(info.value)
    assert max(checkpoint_step(p) for p in list_checkpoints(trainer.run.checkpoints)) == 2
    assert trainer.state.step == 4  # (the step after it ran before the record point)


def test_too_many_skips_in_a_row_stop_at_the_record_point(tmp_path, deciding_on, steps_read_nothing):
    deciding_on("device")
    trainer = make_trainer(tmp_path, poison_at({2, 3, 4, 6}), nan_policy="skip", max_consecutive_skips=2)
    with pytest.raises(NonFiniteError, match=r"at method 'iwae', epoch 0, batch 4 of 5 \(step 4\): 3 steps in a row"):
        trainer.fit()
    # (steps 2 and 3 were settled as two skips at the step-4 checkpoint, which was written, as the host
    # decision writes it; step 4 was found at the epoch's end)
    assert max(checkpoint_step(p) for p in list_checkpoints(trainer.run.checkpoints)) == 4


def test_a_rollback_restores_the_checkpoint_before_the_failed_step(tmp_path, deciding_on, steps_read_nothing):
    deciding_on("device")
    seen: list[int] = []
    trainer = make_trainer(tmp_path, poison_at({POISON_STEP}, seen, once=True), nan_policy="rollback")
    summary = trainer.fit()
    assert seen[:6] == [0, 1, 2, 3, 2, 3] and summary["rollbacks"] == 1
    actions = [r for r in trainer.run.read_metrics() if r["kind"] == "nonfinite"]
    assert [(r["action"], r["step"]) for r in actions] == [("rollback", 2)]


def test_a_stop_request_settles_the_pending_steps_first(tmp_path, deciding_on):
    deciding_on("device")
    trainer = build_trainer(tiny_config(nan_policy="skip", checkpoint_every_steps=0, valid_every=0, epochs=1),
                            tmp_path / "run", data=binary_data(), log=lambda s: None, progress=False,
                            batch_hook=poison_at({1}))
    trainer.start()

    def hook(step, x):
        if step == 2:
            trainer.stop.signum = signal.SIGTERM
        return poison_at({1})(step, x)
    trainer.batch_hook = hook
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM after step 3"):
        trainer.fit()
    assert trainer.state.skipped_steps == 1  # the skip of step 1, settled before the checkpoint
