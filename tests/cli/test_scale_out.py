"""`--nproc 2` on the command line (issue 15), with real gloo ranks on localhost started by the
launcher (forked here, to skip re-importing torch): data-parallel training, sharded IW evaluation and
BDMC equal to a single process, and a batch too small to share refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepem.cli import main
from deepem.workflows import launch as launch_module

TRAIN = ["--dataset", "digits", "--train-limit", "100", "--latent-dim", "4", "--hidden", "16", "--particles", "3",
         "--epochs", "1", "--batch-size", "20", "--valid-every", "0", "--quiet"]


@pytest.fixture(autouse=True)
def _fork(monkeypatch: pytest.MonkeyPatch, shared_data_dir: Path) -> None:
    monkeypatch.setattr(launch_module, "START_METHOD", "fork")
    monkeypatch.setenv("DEEPEM_DATA", str(shared_data_dir))


def test_train_evaluate_and_bdmc_with_two_processes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--nproc", "2", "--out", str(run), *TRAIN]) == 0
    assert (run / "checkpoints" / "ckpt-000000005.pt").exists()
    evaluate = ["evaluate", str(run), "--particles", "10", "--limit", "40", "--batch-size", "10", "--quiet"]
    assert main([*evaluate, "--nproc", "2"]) == 0
    per_point = run / "evaluations" / "iw-k10-test-n40-s0-step5-per-point.npy"
    sharded, sharded_record = np.load(per_point), json.loads((run / "evaluation.json").read_text())
    assert main(evaluate) == 0
    single, single_record = np.load(per_point), json.loads((run / "evaluation.json").read_text())
    assert sharded.shape == (40,) and np.array_equal(sharded, single)
    assert sharded_record["log_likelihood"] == single_record["log_likelihood"]
    assert sharded_record["processes"] == 2
    bdmc = ["bdmc", str(run), "--points", "6", "--batch-size", "3", "--temperatures", "4", "--chains", "2",
            "--leapfrog-steps", "2", "--quiet"]
    assert main([*bdmc, "--nproc", "2"]) == 0
    two = json.loads((run / "bdmc.json").read_text())
    assert main(bdmc) == 0
    one = json.loads((run / "bdmc.json").read_text())
    assert (two["lower"], two["upper"]) == (one["lower"], one["upper"])
    out = capfd.readouterr().out
    assert out.count("test log-likelihood (IWAE bound, K=10, 40 points)") == 2  # once per command, by rank 0


def test_a_batch_that_cannot_be_shared_is_refused_in_one_line(tmp_path: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--nproc", "2", "--out", str(tmp_path / "run"), *TRAIN, "--batch-size", "33"]
    assert main(argv) == 2  # 100 points in batches of 33: the last batch has 1 point
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid batch_size = 33 for 2 processes" in err[0]
    assert not (tmp_path / "run").exists()
