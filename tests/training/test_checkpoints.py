"""Checkpoints and result files: damaged ones are detected, reported, moved aside, and the previous
good checkpoint is used (and the resumed run still ends exactly where the undamaged one does); only
the newest N are kept; a crafted pickle runs no code even with a correct checksum."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from training_helpers import assert_trees_equal, binary_data, tiny_config

from deepem.files import ChecksumError, sha256_bytes
from deepem.training.checkpoint_file import (
    MAGIC,
    CheckpointError,
    checkpoint_step,
    encode_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from deepem.training.run import RunFolder, RunFolderError
from deepem.training.trainer import Trainer
from deepem.workflows.assembly import build_trainer

# 2 epochs of 5 steps, checkpoints every 2 steps and at epoch ends: 0, 2, 4, 5, 6, 8, 10


def _trainer(run_dir: Path, logs: list[str] | None = None, **changes) -> Trainer:
    log = logs.append if logs is not None else (lambda s: None)
    return build_trainer(tiny_config(**changes), run_dir, data=binary_data(), log=log, progress=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ckpt") / "run"
    trainer = _trainer(run_dir)
    trainer.start()
    trainer.fit()
    return run_dir


def _final_state(run_dir: Path) -> dict:
    return load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])


def _assert_same_final(a: Path, b: Path) -> None:
    sa, sb = _final_state(a), _final_state(b)
    for key in ("model", "method", "optimizers", "rng"):
        assert_trees_equal(sa[key], sb[key], key)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_payload_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-100] ^= 0x01
    p.write_bytes(bytes(data))


def _flip_header(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[0] ^= 0x20
    p.write_bytes(bytes(data))


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _no_checksum_line(p: Path) -> None:
    p.write_bytes(MAGIC + b"0123")


DAMAGES = {
    "truncated": (_truncate, "is corrupted or truncated: payload sha256"),
    "flipped payload bit": (_flip_payload_byte, "is corrupted or truncated: payload sha256"),
    "flipped header bit": (_flip_header, "is not a deepem checkpoint (bad header)"),
    "empty": (_empty, "is not a deepem checkpoint (bad header)"),
    "no checksum line": (_no_checksum_line, "is truncated (no checksum line)"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_newest_checkpoint_is_rejected_and_the_previous_one_used(finished_run, tmp_path, damage):
    damage_fn, message = DAMAGES[damage]
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    newest = list_checkpoints(run_dir / "checkpoints")[-1]
    damage_fn(newest)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_checkpoint(newest)
    logs: list[str] = []
    trainer = _trainer(run_dir, logs)
    assert trainer.resume()
    assert trainer.state.step == 8  # the one before the damaged ckpt-10
    warning = [line for line in logs if line.startswith("warning: skipping unusable checkpoint")]
    assert len(warning) == 1 and message in warning[0] and "moved aside to ckpt-000000010.pt.unusable" in warning[0]
    assert (run_dir / "checkpoints" / "ckpt-000000010.pt.unusable").exists()
    trainer.fit()  # redo the last two steps: same result as the undamaged run
    _assert_same_final(finished_run, run_dir)


def test_every_checkpoint_damaged_restarts_from_step_zero_and_still_ends_the_same(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    for p in list_checkpoints(run_dir / "checkpoints"):
        _flip_payload_byte(p)
    logs: list[str] = []
    trainer = _trainer(run_dir, logs)
    assert not trainer.resume()
    assert sum("skipping unusable checkpoint" in line for line in logs) == 7
    assert any("starting the run again from step 0" in line for line in logs)
    assert RunFolder(run_dir).read_metrics() == []
    trainer.fit()
    _assert_same_final(finished_run, run_dir)


def test_checkpoint_of_another_architecture_or_without_state_is_refused(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    ckpts = list_checkpoints(run_dir / "checkpoints")
    good = load_checkpoint(ckpts[-1])
    wrong = dict(good, model={k: torch.zeros(3) for k in good["model"]})
    save_checkpoint(ckpts[-1], wrong)  # verifies, but does not fit the model
    save_checkpoint(ckpts[-2], {"model": good["model"]})  # verifies, lacks everything else
    logs: list[str] = []
    trainer = _trainer(run_dir, logs)
    assert trainer.resume() and trainer.state.step == 6
    assert "do not match this model's (different architecture)" in logs[0]
    assert "lacks method, optimizers, train_state, rng" in logs[1]


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    trainer = _trainer(tmp_path / "run", keep_checkpoints=3)
    trainer.start()
    trainer.fit()
    assert [checkpoint_step(p) for p in list_checkpoints(trainer.run.checkpoints)] == [6, 8, 10]
    assert not list(trainer.run.checkpoints.glob(".*tmp"))  # no temporary files left behind


class _Payload:
    """Unpickling this calls open(marker, 'w'): code execution, if the loader allowed it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_crafted_pickle_with_a_correct_checksum_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"model": {}, "evil": _Payload(marker)}, buffer)
    payload = buffer.getvalue()
    # The payload is live: an unsafe load runs it (this proves the test can fail).
    torch.load(io.BytesIO(payload), weights_only=False)
    assert marker.exists()
    marker.unlink()
    crafted = tmp_path / "ckpt-000000999.pt"
    crafted.write_bytes(MAGIC + sha256_bytes(payload).encode() + b"\n" + payload)  # checksum matches
    with pytest.raises(CheckpointError, match="could not be loaded safely"):
        load_checkpoint(crafted)
    assert not marker.exists()


def test_crafted_checkpoint_in_a_run_is_skipped_on_resume(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"evil": _Payload(marker)}, buffer)
    payload = buffer.getvalue()
    (run_dir / "checkpoints" / "ckpt-000000099.pt").write_bytes(
        MAGIC + sha256_bytes(payload).encode() + b"\n" + payload)
    logs: list[str] = []
    trainer = _trainer(run_dir, logs)
    assert trainer.resume() and trainer.state.step == 10
    assert "could not be loaded safely" in logs[0] and not marker.exists()


def test_checkpoint_encoding_round_trips_every_rng_state(finished_run):
    state = _final_state(finished_run)
    data = encode_checkpoint(state)
    assert data.startswith(MAGIC)
    again = torch.load(io.BytesIO(data[data.index(b"\n", len(MAGIC)) + 1:]), weights_only=True)
    assert_trees_equal(state, again)
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}


def test_result_files_carry_a_checksum_and_edits_are_detected(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.create()
    path = run.write_result("evaluation.json", {"log_likelihood": -90.5})
    assert run.read_result("evaluation.json") == {"log_likelihood": -90.5}
    checksum_line = (tmp_path / "run" / "evaluation.json.sha256").read_text()
    assert checksum_line == f"{sha256_bytes(path.read_bytes())}  evaluation.json\n"  # sha256sum -c format
    path.write_text(path.read_text().replace("-90.5", "-80.5"))
    with pytest.raises(ChecksumError, match="does not match its checksum file evaluation.json.sha256"):
        run.read_result("evaluation.json")


def test_edited_config_is_not_trusted(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["lr"] = 1.0
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunFolderError, match="configuration cannot be trusted"):
        RunFolder(run_dir).read_config()


def test_validation_does_not_move_the_training_rng(finished_run, tmp_path):
    """Runs with and without validation train identically (validation has its own generator), so
    changing valid_every on resume cannot change the trajectory."""
    trainer = _trainer(tmp_path / "run", valid_every=0)
    trainer.start()
    trainer.fit()
    _assert_same_final(finished_run, tmp_path / "run")
    assert not any(r["kind"] == "valid" for r in trainer.run.read_metrics())
