"""The comparison table of several evaluated run folders: one row per run, written as Markdown, CSV and
JSON with figures. (Training and evaluating the runs is workflows/compare.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepem.errors import MissingResultError
from deepem.files import atomic_write_bytes, read_json_lines
from deepem.report.figures import bar_chart, learning_curves
from deepem.report.tables import csv_table, markdown_table

COLUMNS = [
    ("method", "method"),
    ("particles", "K"),
    ("epochs", "epochs"),
    ("test_ll", "test log-lik."),
    ("test_stderr", "± s.e."),
    ("train_ll", "train log-lik."),
    ("generalisation_gap", "gen. gap"),
    ("kl_to_prior", "KL(q‖p(z))"),
    ("active_units", "active units"),
    ("train_points_per_sec", "train pts/s"),
    ("train_seconds", "train s"),
]


def newest_iw_evaluation(run_dir: Path, split: str) -> dict[str, Any]:
    """The newest importance-weighted evaluation of the complete `split` that the run holds (every
    evaluation keeps its own file, named by its settings: evaluations/iw-k<K>-<split>-<subset>-s<seed>.json)."""
    files = [p for p in (run_dir / "evaluations").glob(f"iw-k*-{split}-*.json") if "-observed-" not in p.name]
    if not files:
        raise MissingResultError(f"run {run_dir} has no IW evaluation of its {split} split; run "
                                 f"`deepem evaluate {run_dir} --split {split}` first")
    return json.loads(max(files, key=lambda p: p.stat().st_mtime_ns).read_text())


def run_row(run_dir: Path, label: str, train_seconds: float | None = None) -> dict[str, Any]:
    """One table row from what a finished, evaluated run folder holds: its config, its IW evaluations of
    the test and train splits, and the training throughput logged in metrics.jsonl (median over the
    logged windows, so validation time does not count)."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    test, train = newest_iw_evaluation(run_dir, "test"), newest_iw_evaluation(run_dir, "train")
    records = read_json_lines(run_dir / "metrics.jsonl")
    rates = sorted(r["points_per_sec"] for r in records if r.get("kind") == "train" and "points_per_sec" in r)
    epochs = max((r["epoch"] for r in records if r.get("kind") == "valid"), default=config["epochs"])
    return {
        "method": label,
        "particles": config.get("method_options", {}).get("particles", config.get("particles")),  # K (older: top level)
        "epochs": epochs,
        "test_ll": test["log_likelihood"],
        "test_stderr": test["stderr"],
        "train_ll": train["log_likelihood"],
        "generalisation_gap": train["log_likelihood"] - test["log_likelihood"],
        "kl_to_prior": test["kl_to_prior"],
        "active_units": test["active_units"],
        "train_points_per_sec": rates[len(rates) // 2] if rates else None,
        "train_seconds": train_seconds,
        "estimator": test["estimator"],
        "test_points": test["n_points"],
        "test_subset": test.get("subset", ""),
        "dataset": config.get("dataset", ""),
        "train_subset": train.get("subset", ""),
    }


def write_comparison(root: Path, rows: list[dict[str, Any]], curves: dict[str, list[dict[str, Any]]]) -> None:
    note = ""
    if rows:
        first = rows[0]
        # Say "subset" only where one was used: the record's own description ("fixed random 500 of
        # 10000" or "all 10000").
        note = (f"\nTest log-likelihood: {first['estimator']} on {first['test_subset'] or first['test_points']} "
                f"test points (nats, higher is better); train log-likelihood with the same estimator on "
                f"{first['train_subset'] or 'the'} points trained on; gen. gap = train - test; KL(q‖p(z)) "
                "and active units on the test points.\n")
    atomic_write_bytes(root / "results.md", (markdown_table(rows, COLUMNS) + note).encode())
    atomic_write_bytes(root / "results.csv", csv_table(rows, COLUMNS).encode())
    atomic_write_bytes(root / "results.json", (json.dumps(rows, indent=2) + "\n").encode())
    learning_curves(curves, root / "figures" / "validation.png")
    if rows:  # estimates as points with ± 1 s.e., labelled with the dataset, the estimator and the subset
        subset = rows[0]["test_subset"].split()
        total = int(subset[-1]) if subset and subset[-1].isdigit() else None
        bar_chart({r["method"]: r["test_ll"] for r in rows}, {r["method"]: r["test_stderr"] for r in rows},
                  root / "figures" / "test_log_likelihood.png", ylabel="test log-likelihood (nats)",
                  dataset=rows[0]["dataset"], estimator=rows[0]["estimator"], n_points=rows[0]["test_points"],
                  n_total=total)
