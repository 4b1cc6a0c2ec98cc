"""Tables of the architecture experiment (benchmarks/scripts/architectures_mnist.sh) from its run folders.

    python benchmarks/architectures_report.py runs/architectures > tables.md   # also writes tables.json

One row per run folder under the root (`<root>/<compare folder>/<run>`): architecture, dataset, method
and K, training steps and seconds, training points per second (median of the logged windows), the
training IW bound over the last logged windows, and from the IW evaluation of the test split with the
most particles: the log-likelihood ± s.e., KL(q‖p(z)) and the active units, per stochastic layer
(evaluation/diagnostics.py's active_units_per_layer; results.md of `compare` shows only the total)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from deepem.files import read_json_lines
from deepem.report.tables import markdown_table

COLUMNS = [
    ("dataset", "dataset"),
    ("architecture", "architecture"),
    ("method", "method"),
    ("particles", "K"),
    ("steps", "steps"),
    ("test_ll", "test log-lik."),
    ("test_stderr", "± s.e."),
    ("eval", "estimator (test points)"),
    ("train_ll", "train log-lik."),
    ("train_iw_bound", "train IW bound (last 3 logs)"),
    ("kl_to_prior", "KL(q‖p(z))"),
    ("active_units", "active units"),
    ("active_units_per_layer", "active per layer"),
    ("train_points_per_sec", "train pts/s"),
]


def best_evaluation(run: Path, split: str) -> dict[str, Any] | None:
    """The IW evaluation of `split` with the most particles (None if there is none)."""
    files = list((run / "evaluations").glob(f"iw-k*-{split}-*.json"))
    if not files:
        return None
    return json.loads(max(files, key=lambda p: int(re.match(r"iw-k(\d+)", p.name).group(1))).read_text())


def row(run: Path) -> dict[str, Any]:
    config = json.loads((run / "config.json").read_text())
    records = [r for r in read_json_lines(run / "metrics.jsonl") if r.get("kind") == "train"]
    rates = sorted(r["points_per_sec"] for r in records if "points_per_sec" in r)
    bounds = [r["iw_bound"] for r in records if "iw_bound" in r][-3:]
    test, train = best_evaluation(run, "test"), best_evaluation(run, "train") or {}
    layers = test["active_units_per_layer"]
    return {
        "dataset": config["dataset"],
        "architecture": config["model"]["architecture"],
        "method": config["method"],
        "particles": config["particles"],
        "steps": test["step"],
        "test_ll": test["log_likelihood"],
        "test_stderr": test["stderr"],
        "eval": f"K={test['particles']} ({test['n_points']})",
        "train_ll": train.get("log_likelihood"),
        "train_iw_bound": sum(bounds) / len(bounds) if bounds else None,
        "kl_to_prior": test["kl_to_prior"],
        "active_units": test["active_units"],
        "active_units_per_layer": " + ".join(str(n) for n in layers) if len(layers) > 1 else str(layers[0]),
        "train_points_per_sec": rates[len(rates) // 2] if rates else None,
    }


def main(root: str) -> None:
    runs = sorted(p.parent for p in Path(root).glob("*/*/config.json"))
    rows = [row(run) for run in runs]
    Path(root, "tables.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown_table(rows, COLUMNS))


if __name__ == "__main__":
    main(sys.argv[1])
