"""The comparison table of several evaluated run folders: one row per run, written as Markdown, CSV and
JSON with figures. (Training and evaluating the runs is workflows/compare.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepem.errors import MissingResultError
from deepem.files import atomic_write_bytes, read_json_lines
from deepem.report.estimates import comparison_figure, seeds_figure
from deepem.report.figures import learning_curves
from deepem.report.plotting import save
from deepem.report.tables import csv_table, markdown_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


#: the names evaluation files had before records named their estimator: "iw-k5000-test-all-s0.json",
#: "iw-k50-test-observed-n40-s0-step7.json", "ais-T500-c16-L10-prior-test-n10-s0.json"
LEGACY_NAME = re.compile(r"^(?P<estimator>iw|ais)-.*?-(?P<split>train|valid|test)(?P<observed>-observed)?"
                         r"-(?:all|n\d+)-s-?\d+(?:-step\d+)?$")


def evaluation_files(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every evaluation record a run folder holds, with its file (unreadable ones left out)."""
    found = []
    for path in sorted((Path(run_dir) / "evaluations").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "log_likelihood" in record:
            found.append((path, record))
    return found


def record_identity(path: Path, record: dict[str, Any]) -> tuple[str | None, str | None, bool]:
    """(registered estimator name, split, whether of the observed part only) of an evaluation record:
    from its contents; a record written before it named its estimator, from its file name."""
    legacy = LEGACY_NAME.match(path.stem)
    name = record.get("estimator_name") or (legacy and legacy["estimator"])
    split = record.get("split") or (legacy and legacy["split"])
    observed = (record.get("estimator_name") == "iw-observed" or str(record.get("data", "")).startswith("observed")
                or bool(legacy and legacy["observed"]))
    return name, split, observed


def newest_evaluation_file(run_dir: Path, split: str, estimator: str | None = None) -> Path:
    """The file of the newest evaluation of the complete `split` that the run holds, by `estimator` (a
    registered name; None: by any), found by what the records say, not by their file names."""
    files = [path for path, record in evaluation_files(run_dir)
             if (identity := record_identity(path, record))[1] == split and not identity[2]
             and (estimator is None or identity[0] == estimator)]
    if not files:
        by = f" by the {estimator} estimator" if estimator else ""
        how = f" --estimator {estimator}" if estimator else ""
        raise MissingResultError(f"run {run_dir} has no evaluation{by} of its {split} split; run "
                                 f"`deepem evaluate {run_dir} --split {split}{how}` first")
    return max(files, key=lambda p: p.stat().st_mtime_ns)


def per_point_file(record_file: Path) -> Path:
    """Where evaluation keeps the per-point values of the record in `record_file` (TAG.json -> TAG-per-point.npy)."""
    return record_file.with_name(record_file.stem + "-per-point.npy")


def run_row(run_dir: Path, label: str, train_seconds: float | None = None, test: dict[str, Any] | None = None,
            train: dict[str, Any] | None = None, estimator: str | None = None) -> dict[str, Any]:
    """One table row from what a finished, evaluated run folder holds: its config, its evaluations of
    the test and train splits, and the training throughput logged in metrics.jsonl (median over the
    logged windows, so validation time does not count).

    test, train: the evaluation records to tabulate (as `evaluate_run` returned them); None: the
    newest of the split on file by `estimator` (a registered name; None: the test split's newest
    record's estimator, and the train split's newest by the same)."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    if test is None:
        test_file = newest_evaluation_file(run_dir, "test", estimator)
        test = json.loads(test_file.read_text())
        estimator = estimator or record_identity(test_file, test)[0]
    else:
        test_file = run_dir / test["file"]
    if train is None:
        train = json.loads(newest_evaluation_file(run_dir, "train", estimator or test.get("estimator_name"))
                           .read_text())
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
        # Where the numbers come from, and which seed of which method: `compare --seeds` writes seed S
        # of METHOD to METHOD/seed-S, so the figures can draw a method's seeds as one row.
        "seed": config.get("seed"),
        "group": run_dir.parent.name if run_dir.name == f"seed-{config.get('seed')}" else label,
        "test_per_point": str(per_point_file(test_file)),
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
    groups = {r["method"]: r.get("group", r["method"]) for r in rows}
    learning_curves(curves, root / "figures" / "validation.png", dataset=rows[0]["dataset"] if rows else None,
                    groups=groups if len(set(groups.values())) < len(groups) else None)
    if rows:
        save(estimates_figure(rows), root / "figures" / "test_log_likelihood.png")


def _load_per_point(row: dict[str, Any]) -> np.ndarray | None:
    path = Path(row.get("test_per_point") or "")
    return np.load(path) if path.is_file() else None


def estimates_figure(rows: list[dict[str, Any]], reference: str | None = None) -> Figure:
    """test_log_likelihood.png from the table's rows (`run_row`): the estimates with ± 1 s.e. and, where
    every row's per-point values are on file and cover the same test points (same subset), their paired
    differences to `reference` (default: the first method). Rows that are seeds of one method (their
    "group") are drawn as one row per method: each seed a dot, the mean ± 1 s.d., and each seed's own
    training throughput."""
    first = rows[0]
    subset = (first.get("test_subset") or "").split()
    labels = {"dataset": first["dataset"], "estimator": first["estimator"], "n_points": first["test_points"],
              "n_total": int(subset[-1]) if subset and subset[-1].isdigit() else None}
    per_point = {r["method"]: _load_per_point(r) for r in rows}
    # evaluation's subsets are one fixed permutation's prefix, whatever the seed: the same description
    # and count means the same points, in the same order
    same_points = len({(r["test_subset"], r["test_points"]) for r in rows}) == 1
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("group", r["method"]), []).append(r)
    if any(len(members) > 1 for members in groups.values()):
        values = {g: {r["seed"]: r["test_ll"] for r in members} for g, members in groups.items()}
        throughput = {g: {r["seed"]: r["train_points_per_sec"] for r in members
                          if r.get("train_points_per_sec") is not None} for g, members in groups.items()}
        points = {g: {r["seed"]: per_point[r["method"]] for r in members if per_point[r["method"]] is not None}
                  for g, members in groups.items()}
        # paired per seed: seed S of a method against seed S of the reference, on the same points
        return seeds_figure(values, per_point=points if same_points else None, reference=reference,
                            throughput=throughput if any(throughput.values()) else None, **labels)
    complete = same_points and all(v is not None for v in per_point.values())
    return comparison_figure({r["method"]: r["test_ll"] for r in rows}, {r["method"]: r["test_stderr"] for r in rows},
                             per_point=per_point if complete else None, reference=reference, **labels)
