"""Run folders written by an earlier deepem, and what it computed from them.

`fixtures/` holds small run folders written by the code of main at commit 58d4f12 (before the training and
CLI layers were redesigned) with the commands in BUILD below. `expected.json` holds what that code then
computed from copies of them (`observe`): evaluations at the fixture's step, and after resuming one more
epoch, the validation bound, evaluation and parameter sums. The test runs `observe` with today's code.

    python tests/legacy/observe.py --build     # (with the old code) write fixtures/ and expected.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
EXPECTED = HERE / "expected.json"

COMMON = ["--dataset", "digits", "--hidden", "16", "--latent-dim", "4", "--train-limit", "200",
          "--batch-size", "20", "--valid-particles", "10", "--quiet", "--threads", "1", "--epochs", "1"]
BUILD = {
    "iwae": ["-m", "iwae", "--particles", "3"],
    "avb-implicit": ["-m", "avb", "--encoder", "implicit", "--noise-dim", "4"],
    "miss-iwem": ["-m", "miss-iwem", "--missing", "mcar:0.3", "--particles", "3"],
    "seeds": ["-m", "iwae", "--seeds", "2", "--particles", "3"],
    "two-rank": ["-m", "iwae", "--nproc", "2", "--particles", "3"],
}
#: run folders to observe (a vectorised group is resumed and evaluated seed by seed)
RUNS = {"iwae": "iwae", "avb-implicit": "avb-implicit", "miss-iwem": "miss-iwem", "seed-0": "seeds/seed-0",
        "seed-1": "seeds/seed-1", "two-rank": "two-rank"}
AIS = ["--estimator", "ais", "--ais-initial", "prior", "--temperatures", "20", "--chains", "2",
       "--leapfrog-steps", "2"]


def deepem(*args: str, cwd: Path) -> None:
    env = dict(os.environ, DEEPEM_DATA=os.environ.get("DEEPEM_DATA", str(HERE.parents[2] / "shared" / "data")))
    subprocess.run([sys.executable, "-m", "deepem", *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def evaluation(run: Path, name: str) -> dict[str, float]:
    extra = AIS if name == "avb-implicit" else ["-k", "20"]
    deepem("evaluate", str(run), "--limit", "30", "--quiet", "--threads", "1", *extra, cwd=run.parent)
    record = json.loads((run / "evaluation.json").read_text())
    return {"log_likelihood": record["log_likelihood"], "stderr": record["stderr"]}


def parameter_sums(run: Path) -> list[float]:
    """The sums of every model parameter in the newest checkpoint, sorted (independent of their names)."""
    newest = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    data = newest.read_bytes()  # a magic line, a checksum line, then the torch.save payload
    payload = data[data.index(b"\n", data.index(b"\n") + 1) + 1:]
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)["model"]
    return sorted(float(v.double().sum()) for v in state.values() if v.is_floating_point())


def observe(name: str, work: Path) -> dict[str, object]:
    """Evaluate a copy of the fixture, resume another copy one epoch further, evaluate that."""
    rel = RUNS[name]
    here = work / "at-fixture"
    shutil.copytree(FIXTURES / rel, here)
    result: dict[str, object] = {"evaluation": evaluation(here, name)}
    resumed = work / "resumed"
    shutil.copytree(FIXTURES / rel, resumed)
    nproc = ["--nproc", "2"] if name == "two-rank" else []
    deepem("train", "--resume", str(resumed), "--epochs", "2", "--quiet", "--threads", "1", *nproc, cwd=work)
    valid = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in valid if r.get("kind") == "valid"]
    result["valid_bound"] = valid[-1]["valid_bound"] if valid else None
    result["parameter_sums"] = parameter_sums(resumed)
    result["resumed_evaluation"] = evaluation(resumed, name)
    return result


def build() -> None:
    shutil.rmtree(FIXTURES, ignore_errors=True)
    FIXTURES.mkdir()
    for name, args in BUILD.items():
        deepem("train", *args, *COMMON, "--out", name, cwd=FIXTURES)
    for lock in FIXTURES.rglob(".lock"):  # (left behind by that code)
        lock.unlink()
    expected = {}
    for name in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            expected[name] = observe(name, Path(tmp))
    EXPECTED.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", action="store_true")
    if parser.parse_args().build:
        build()
