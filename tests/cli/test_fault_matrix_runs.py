"""Issue 9's fault matrix, the rows that need a trained run: a read-only or blocked run folder, a full
disk during training, CUDA asked for where there is none, a file given for a run folder, evaluations
that must not replace each other, run folders that travel, resumed settings recorded. Each user error
is one line on stderr with exit status 2, no traceback, and nothing the user had is lost."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepem.cli import main

TRAIN = ["--threads", "1", "train", "--dataset", "digits", "--latent-dim", "2", "--hidden", "8", "--epochs", "1",
         "--train-limit", "60", "--valid-particles", "3", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "r"
    shutil.copytree(trained, copy)
    return copy


def one_error(capsys) -> tuple[str, str]:
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    return errors[0], captured.out


def test_item3_result_is_printed_before_a_failed_write(run, capsys):
    (run / "evaluations").write_text("a file where the folder should be")  # the write must fail
    assert main(["evaluate", str(run), "--particles", "5", "--limit", "20", "--quiet"]) == 2
    error, out = one_error(capsys)
    assert "test log-likelihood (IWAE bound, K=5, 20 points)" in out  # the result was shown first
    assert "could not be written" in error and "make the run folder writable" in error
    assert (run / "evaluations").read_text() == "a file where the folder should be"


def test_item4_disk_full_during_training_says_the_data_are_safe_and_how_to_resume(tmp_path, monkeypatch, capsys):
    import deepem.training.trainer as trainer_module

    real = trainer_module.Trainer.save
    calls = {"n": 0}

    def full_disk(self):
        calls["n"] += 1
        if calls["n"] > 1:  # the step-0 checkpoint is written; the next write finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", str(self.run.checkpoints / "ckpt.pt"))
        return real(self)

    monkeypatch.setattr(trainer_module.Trainer, "save", full_disk)
    out = tmp_path / "full"
    assert main([*TRAIN, "--out", str(out)]) == 2
    error, _ = one_error(capsys)
    assert "No space left on device" in error and "last checkpoint is intact" in error
    assert f"deepem train --resume {out}" in error
    assert any((out / "checkpoints").iterdir())


def test_item5_cuda_without_cuda(run, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for command in (["evaluate", str(run), "--device", "cuda"], ["bdmc", str(run), "--device", "cuda"]):
        assert main(command) == 2
        error, _ = one_error(capsys)
        assert "CUDA is not available" in error and "--device cpu" in error


def test_item9_a_file_given_for_a_run_folder(run, capsys):
    assert main(["evaluate", str(run / "config.json")]) == 2
    error, _ = one_error(capsys)
    assert "is a file, not a run folder" in error and str(run) in error


def test_item11_every_evaluation_is_kept_and_the_current_one_is_named(run, capsys):
    assert main(["evaluate", str(run), "--particles", "20", "--quiet"]) == 0
    assert main(["evaluate", str(run), "--particles", "5", "--limit", "10", "--quiet"]) == 0
    current = json.loads((run / "evaluation.json").read_text())
    step = current["step"]
    files = sorted(p.name for p in (run / "evaluations").glob("*.json"))
    assert files == [f"iw-k20-test-all-s0-step{step}.json", f"iw-k5-test-n10-s0-step{step}.json"]
    assert current["file"] == f"evaluations/iw-k5-test-n10-s0-step{step}.json" and current["dtype"] == "float32"
    big = json.loads((run / "evaluations" / f"iw-k20-test-all-s0-step{step}.json").read_text())
    assert big["particles"] == 20 and big["n_points"] == 270


def test_item12_a_run_travels(tmp_path, capsys):
    """Trained with a relative --data-dir, evaluated from another directory, then with the data moved
    elsewhere and found through DEEPEM_DATA."""
    home, data = tmp_path / "home", tmp_path / "home" / "data"
    data.mkdir(parents=True)
    shared = Path(os.environ.get("DEEPEM_DATA", "")) / "uci" / "banknote_authentication.csv"
    if not shared.is_file():
        pytest.skip("benchmark data not found; set DEEPEM_DATA")
    (data / "uci").mkdir()
    shutil.copy(shared, data / "uci")
    env = {k: v for k, v in os.environ.items() if k != "DEEPEM_DATA"}
    cli = [sys.executable, "-m", "deepem.cli", "--threads", "1"]
    train = [*cli, "train", "--dataset", "banknote", "--data-dir", "data", "--latent-dim", "2", "--hidden", "8",
             "--epochs", "1", "--valid-every", "0", "--out", "run", "--quiet"]
    assert subprocess.run(train, cwd=home, env=env, capture_output=True).returncode == 0
    config = json.loads((home / "run" / "config.json").read_text())
    assert Path(config["data_dir"]).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    evaluate = [*cli, "evaluate", str(home / "run"), "--particles", "5", "--quiet"]
    assert subprocess.run(evaluate, cwd=elsewhere, env=env, capture_output=True).returncode == 0
    moved = tmp_path / "moved"
    shutil.move(str(data), moved)
    proc = subprocess.run(evaluate, cwd=elsewhere, env={**env, "DEEPEM_DATA": str(moved)}, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def test_item13_resumed_settings_are_recorded(run, capsys):
    assert main(["--threads", "1", "train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["epochs"] == 2


def test_item19_no_license_deprecation_in_the_package_metadata():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'license = "MIT"' in text and "setuptools>=77" in text


def test_item10_compare_never_overwrites_a_users_folder_and_validates_first(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("my own notes")
    tiny = ["--dataset", "digits", "--latent-dim", "2", "--hidden", "8", "--epochs", "1", "--train-limit", "40",
            "--valid-every", "0", "--eval-particles", "5", "--eval-limit", "10", "--quiet"]
    assert main(["--threads", "1", "compare", "--methods", "vae", "--out", str(mine), "--force", *tiny]) == 2
    error, _ = one_error(capsys)
    assert "is not a deepem comparison" in error and (mine / "results.md").read_text() == "my own notes"
    fresh = tmp_path / "fresh"
    assert main(["--threads", "1", "compare", "--methods", "vae,vae", "--out", str(fresh), *tiny]) == 2
    error, _ = one_error(capsys)
    assert "names vae more than once" in error and not fresh.exists()
    assert main(["--threads", "1", "compare", "--methods", "vae,nosuch", "--out", str(fresh), *tiny]) == 2
    one_error(capsys)
    assert not fresh.exists()  # nothing written before the settings were checked


def test_item7_ctrl_c_during_compare_stops_cleanly_and_resumes(tmp_path):
    """SIGINT while a method of a comparison trains: exit 130 after a checkpoint, no traceback, and the
    same command resumes the comparison to its end."""
    import signal
    import time

    cmd = [sys.executable, "-u", "-m", "deepem.cli", "--threads", "1", "compare", "--methods", "vae,iwae",
           "--dataset", "digits", "--latent-dim", "2", "--hidden", "8", "--epochs", "40", "--train-limit", "400",
           "--valid-every", "0", "--eval-particles", "5", "--eval-limit", "10", "--out", str(tmp_path / "c"),
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # "== vae: training ..." once the first run has started
    assert line.startswith("== vae"), line
    # inside the first method's training loop: its first metrics record (step 50) is written; a fixed
    # sleep could land before the loop on a loaded machine, and then there is nothing to resume
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in (tmp_path / "c").rglob("metrics.jsonl")):
        assert time.monotonic() < deadline and proc.poll() is None, "the first run never started training"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err and "re-run the same command" in out + err
    again = subprocess.run([c for c in cmd if c != "-u"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "== vae: resuming" in again.stdout and (tmp_path / "c" / "results.md").is_file()
