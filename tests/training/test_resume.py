"""Exact resume under real signals: training processes killed with SIGKILL at seeded random steps (and
once half-way through writing a checkpoint), or stopped by SIGTERM / SIGINT, and resumed each time,
end bitwise equal to the uninterrupted run with the same seed: parameters, method state (IWEM's
annealing counter, a buffer fed by numpy's and Python's generators), optimiser state, RNG states and
metrics. Dynamic binarisation is on (grey-level synthetic data).

All attempts run in one subprocess (resume_driver.py) that forks a child per attempt, so the test
pays one interpreter start-up."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import assert_trees_equal

from deepem.training.checkpoint_file import list_checkpoints, load_checkpoint
from deepem.training.run import RunFolder

DRIVER = Path(__file__).with_name("resume_driver.py")
STEPS = 30  # 3 epochs of 10 batches; checkpoints every 4 steps and at epoch ends
KILL_STEPS = sorted(random.Random(20240611).sample(range(1, STEPS), 4))


def _scenarios() -> list[dict]:
    return [
        # IWEM: its annealing counter (a buffer) advances every update and sets the θ loss.
        {"name": "iwem", "method": "iwem", "method_options": {"alpha_every": 2, "alpha_step": 0.05},
         "cycles": [{"kill_at_step": s} for s in KILL_STEPS] + [{}]},
        # Ctrl-C at step 5 (checkpoint at 6), SIGKILL during the 2nd checkpoint write after resuming
        # (ckpt-10, the end of epoch 1), SIGTERM at step 25 (checkpoint at 26), then to the end.
        {"name": "probe", "method": "rngprobe",
         "cycles": [{"sigint_at_step": 5}, {"kill_in_save": 2}, {"sigterm_at_step": 25}, {}]},
    ]


@pytest.fixture(scope="module")
def driven(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("resume")
    spec = root / "spec.json"
    spec.write_text(json.dumps({"root": str(root), "scenarios": _scenarios()}))
    result = root / "result.json"
    proc = subprocess.run([sys.executable, str(DRIVER), str(spec), str(result)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, json.loads(result.read_text())


def _final(run_dir: Path) -> dict:
    newest = list_checkpoints(run_dir / "checkpoints")[-1]
    return load_checkpoint(newest)


def _comparable_metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "points_per_sec"} for r in RunFolder(run_dir).read_metrics()]


def _assert_same_end(root: Path, name: str) -> None:
    ref, got = _final(root / f"{name}-ref"), _final(root / f"{name}-int")
    assert ref["train_state"]["step"] == got["train_state"]["step"] == STEPS
    for key in ("model", "method", "optimizers", "rng"):
        assert_trees_equal(ref[key], got[key], key)
    ref_state = {k: v for k, v in ref["train_state"].items() if k != "elapsed"}
    got_state = {k: v for k, v in got["train_state"].items() if k != "elapsed"}
    assert_trees_equal(ref_state, got_state, "train_state")
    assert _comparable_metrics(root / f"{name}-ref") == _comparable_metrics(root / f"{name}-int")


def test_sigkill_at_random_steps_then_resume_is_bitwise_exact(driven):
    root, results = driven
    res = results["iwem"]
    assert res["reference"].get("exit") == 0, res["reference"]["log"]
    kills = res["cycles"][:-1]
    assert [c.get("signal") for c in kills] == [9] * len(KILL_STEPS), [c["log"] for c in kills]
    assert res["cycles"][-1].get("exit") == 0, res["cycles"][-1]["log"]
    # every resume started from a checkpoint at or before the step the previous attempt died at
    for died_at, nxt in zip(KILL_STEPS, res["cycles"][1:], strict=True):
        resumed_step = int(nxt["log"].split("step ")[1].split()[0])
        assert resumed_step <= died_at
    _assert_same_end(root, "iwem")
    method_state = _final(root / "iwem-int")["method"]
    assert int(method_state["anneal_count"]) == STEPS  # the annealing counter survived 4 kills


def test_signals_and_a_kill_during_a_checkpoint_write_resume_exactly(driven):
    root, results = driven
    sigint, killed_in_save, sigterm, last = results["probe"]["cycles"]
    run = root / "probe-int"
    # Ctrl-C and SIGTERM: the step in progress finishes, a checkpoint is written, the exit code is
    # 128 + signal and the message gives the exact command to resume.
    assert sigint.get("exit") == 130, sigint["log"]
    assert "stopped by SIGINT after step 6" in sigint["log"]
    assert sigterm.get("exit") == 143, sigterm["log"]
    assert "stopped by SIGTERM after step 26" in sigterm["log"]
    for attempt in (sigint, sigterm):
        assert f"Resume with:\n  deepem train --resume {run}" in attempt["log"]
    assert "resumed from ckpt-000000026.pt" in last["log"]
    # SIGKILL half-way through writing ckpt-10: the torn temporary file is left behind, no torn
    # checkpoint exists, and the next attempt resumed from the last complete one (ckpt-8).
    assert killed_in_save.get("signal") == 9
    assert (run / "checkpoints" / ".ckpt-000000010.pt.killed.tmp").exists()
    assert "resumed from ckpt-000000008.pt" in sigterm["log"]
    assert last.get("exit") == 0
    for path in list_checkpoints(run / "checkpoints"):
        load_checkpoint(path)  # every checkpoint left verifies
    _assert_same_end(root, "probe")
    assert float(_final(run)["method"]["noise"]) != 0.0  # the probe did draw from numpy and random
