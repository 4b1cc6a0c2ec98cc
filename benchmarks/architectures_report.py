"""Tables of the architecture experiment (benchmarks/scripts/architectures_mnist.sh) from its run folders.

    python benchmarks/architectures_report.py [--json tables.json] FOLDER ... > tables.md

One row per run folder in the given folders (`compare` folders, or roots holding them): architecture, dataset, method
and K, training steps and seconds, training points per second (median of the logged windows), the
training IW bound over the last logged windows, and from the IW evaluation of the test split with the
most particles: the log-likelihood ± s.e., KL(q‖p(z)) and the active units, per stochastic layer
(evaluation/diagnostics.py's active_units_per_layer; results.md of `compare` shows only the total)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

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
    ("train_eval", "train estimator (points)"),
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


def row(run: Path) -> dict[str, Any] | None:
    """The run's row; None while it has no test evaluation (still training)."""
    config = json.loads((run / "config.json").read_text())
    records = [r for r in read_json_lines(run / "metrics.jsonl") if r.get("kind") == "train"]
    rates = sorted(r["points_per_sec"] for r in records if "points_per_sec" in r)
    bounds = [r["iw_bound"] for r in records if "iw_bound" in r][-3:]
    test, train = best_evaluation(run, "test"), best_evaluation(run, "train") or {}
    if test is None:
        return None
    layers = test["active_units_per_layer"]
    return {
        "dataset": config["dataset"],
        "architecture": config["model"]["architecture"],
        "method": config["method"],
        "particles": config.get("method_options", {}).get("particles", config.get("particles")),  # K (older: top level)
        "steps": test["step"],
        "test_ll": test["log_likelihood"],
        "test_stderr": test["stderr"],
        "eval": f"K={test['particles']} ({test['n_points']})",
        "train_ll": train.get("log_likelihood"),
        "train_eval": f"K={train['particles']} ({train['n_points']})" if train else "",
        "train_iw_bound": sum(bounds) / len(bounds) if bounds else None,
        "kl_to_prior": test["kl_to_prior"],
        "active_units": test["active_units"],
        "active_units_per_layer": " + ".join(str(n) for n in layers) if len(layers) > 1 else str(layers[0]),
        "train_points_per_sec": rates[len(rates) // 2] if rates else None,
        "run": str(run),
        "test_file": test["file"],
    }


def per_point(r: dict[str, Any]) -> np.ndarray:
    return np.load(Path(r["run"]) / r["test_file"].replace(".json", "-per-point.npy"))


def paired_differences(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run against mlp with the same dataset, method and K, and each K against the smallest K of the
    same dataset, architecture and method: mean per-point difference of the test log-likelihoods on the
    same test points (positive: the first is better) and its standard error, which is much smaller than
    that of either estimate because the points are shared."""
    out = []
    for a in rows:
        for b in rows:
            same_data = a["dataset"] == b["dataset"] and a["eval"] == b["eval"] and a is not b
            by_arch = (same_data and b["architecture"] == "mlp" and a["architecture"] != "mlp"
                       and (a["method"], a["particles"]) == (b["method"], b["particles"]))
            by_k = (same_data and (a["architecture"], a["method"]) == (b["architecture"], b["method"])
                    and b["particles"] < a["particles"])
            if by_arch or by_k:
                d = per_point(a) - per_point(b)
                out.append({"dataset": a["dataset"], "estimator": a["eval"],
                            "a": f"{a['architecture']} {a['method']} K={a['particles']}",
                            "b": f"{b['architecture']} {b['method']} K={b['particles']}",
                            "difference": float(d.mean()), "stderr": float(d.std(ddof=1) / np.sqrt(d.size))})
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and differences here")
    args = parser.parse_args(argv)
    runs = [p.parent for folder in args.folders
            for p in sorted(folder.glob("*/config.json")) + sorted(folder.glob("*/*/config.json"))]
    rows = [r for r in map(row, runs) if r is not None]
    diffs = paired_differences(rows)
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "paired_differences": diffs}, indent=2) + "\n")
    print(markdown_table(rows, COLUMNS))
    print(markdown_table(diffs, [("dataset", "dataset"), ("estimator", "test estimator (points)"), ("a", "a"),
                                 ("b", "b"), ("difference", "a - b (nats)"), ("stderr", "± s.e. (paired)")]))


if __name__ == "__main__":
    main(sys.argv[1:])
