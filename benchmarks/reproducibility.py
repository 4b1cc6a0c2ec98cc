"""Same-seed reproducibility on CPU: what changes the numbers of a run (issue 9, item 20).

Trains the same small run (digits, iwae, K = 5, 8 epochs, seed 7) several times through the CLI, each in a
fresh process, under different thread counts and machine load, evaluates each with the default K = 5000
estimator, and records the evaluated log-likelihood to full precision and a hash of the trained parameters.

    python benchmarks/reproducibility.py --repeats 3 --out /tmp/repro   # writes benchmarks/results/reproducibility.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from deepem.training.checkpoint_file import load_checkpoint

RESULTS = Path(__file__).parent / "results" / "reproducibility.json"
TRAIN = ["train", "--dataset", "digits", "--method", "iwae", "-k", "5", "--epochs", "8", "--seed", "7", "--quiet"]


def deepem(threads: int | None, args: list[str], env: dict[str, str]) -> None:
    pre = ["--threads", str(threads)] if threads else []
    subprocess.run([sys.executable, "-m", "deepem.cli", *pre, *args], check=True, capture_output=True,
                   env={**os.environ, **env})


def params_hash(run: Path) -> str:
    """sha256 of the model parameters in the newest checkpoint (bytes of every tensor, in key order)."""
    newest = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    model = load_checkpoint(newest)["model"]
    digest = hashlib.sha256()
    for key in sorted(model):
        digest.update(key.encode())
        digest.update(model[key].contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def busy_processes(n: int) -> list[subprocess.Popen]:
    """n Python processes spinning on a core each: a busy machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/deepem-repro"))
    args = parser.parse_args()
    configs = [  # label, --threads, extra environment, busy processes alongside
        ("threads2", 2, {}, 0),
        ("threads1", 1, {}, 0),
        ("threads2-busy", 2, {}, 2),
        ("threads2-mkl-cbwr-compatible", 2, {"MKL_CBWR": "COMPATIBLE"}, 0),
    ]
    rows = []
    for label, threads, env, busy in configs:
        for r in range(args.repeats):
            run = args.out / f"{label}-{r}"
            hogs = busy_processes(busy)
            start = time.perf_counter()
            try:
                deepem(threads, [*TRAIN, "--out", str(run), "--force"], env)
                deepem(threads, ["evaluate", str(run), "--quiet"], env)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
            record = json.loads((run / "evaluation.json").read_text())
            row = {"config": label, "repeat": r, "threads": threads, "env": env, "busy_processes": busy,
                   "test_ll": repr(record["log_likelihood"]), "params_sha256": params_hash(run),
                   "seconds": round(time.perf_counter() - start, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    # The same trained parameters evaluated with the other thread count: how much is the evaluation's share.
    first = args.out / "threads2-0"
    for threads in (1, 2):
        deepem(threads, ["evaluate", str(first), "--quiet"], {})
        record = json.loads((first / "evaluation.json").read_text())
        row = {"config": f"evaluate threads2-0 with --threads {threads}", "threads": threads,
               "test_ll": repr(record["log_likelihood"]), "params_sha256": params_hash(first)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    meta = {"torch": torch.__version__, "cpu_count": os.cpu_count(), "blas": "mkl" if torch.backends.mkl.is_available()
            else "other", "default_threads": torch.get_num_threads()}
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
