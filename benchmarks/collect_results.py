"""Tables from finished run folders.

    python benchmarks/collect_results.py merge runs/a runs/b ...   # rows of `compare` folders or run folders
    python benchmarks/collect_results.py aiwae runs/aiwae-mnist    # IW and AIS log-likelihoods, gaps

Each `compare` folder holds results.json; each run folder holds its evaluation records in evaluations/ with
per-point values beside each. Records are found by what they say (report/compare.py: `newest_evaluation_file`,
`per_point_file`), not by their file names, so the AIS and IW estimates are compared on exactly the same
points: those of the AIS evaluation's subset, picked from the IW evaluation's per-point values."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from deepem.errors import MissingResultError
from deepem.evaluation.evaluate import evaluation_subset
from deepem.report.compare import COLUMNS, newest_evaluation_file, per_point_file, run_row
from deepem.report.tables import markdown_table


def merge(folders: list[str]) -> str:
    """Rows of `compare` folders (their results.json) or of single evaluated run folders."""
    rows = []
    for folder in folders:
        path = Path(folder)
        if (path / "results.json").exists():
            rows += json.loads((path / "results.json").read_text())
        else:
            rows.append(run_row(path, path.name))
    estimator = rows[0]["estimator"] if rows else ""
    points = rows[0]["test_points"] if rows else 0
    return markdown_table(rows, COLUMNS) + f"\nTest log-likelihood: {estimator} on {points} test points.\n"


def same_points(iw: dict, iw_per_point: np.ndarray, ais: dict) -> np.ndarray:
    """The IW per-point values of the points the AIS record was evaluated on. A limited evaluation takes a
    fixed random subset (evaluation/evaluate.py `evaluation_subset`) of which a smaller limit's points are a
    prefix; an unlimited one takes every point in order."""
    n = ais["n_points"]
    if ais.get("limit") is None:
        if iw.get("limit") is None:
            return iw_per_point
    elif iw.get("limit") is None:
        return iw_per_point[evaluation_subset(len(iw_per_point), n).numpy()]
    elif iw["limit"] >= n:
        return iw_per_point[:n]
    raise MissingResultError(f"the IW evaluation ({iw['subset']}) does not cover the AIS one's points "
                             f"({ais['subset']})")


def aiwae_table(folder: str) -> str:
    """IW and AIS test log-likelihoods of every run under `folder` that has an AIS test evaluation, in
    training order, with the variational gap on the same points."""
    runs = []
    for run in sorted(p for p in Path(folder).iterdir() if (p / "config.json").is_file()):
        try:
            runs.append((run, newest_evaluation_file(run, "test", "ais"), newest_evaluation_file(run, "test", "iw")))
        except MissingResultError:
            continue  # not evaluated by both estimators
    if not runs:
        raise MissingResultError(f"no run under {folder} has both an IW and an AIS evaluation of its test split")
    runs.sort(key=lambda found: (found[0] / "config.json").stat().st_mtime)  # in training order
    rows = []
    results = {}
    for run, ais_file, iw_file in runs:
        result = results[run.name] = run_row(run, run.name, estimator="iw")
        ais, iw = json.loads(ais_file.read_text()), json.loads(iw_file.read_text())
        n = ais["n_points"]
        ais_pp = np.load(per_point_file(ais_file))
        iw_pp = same_points(iw, np.load(per_point_file(iw_file)), ais)
        rows.append({
            "method": run.name,
            "iw_test_all": result["test_ll"],
            "iw_test": float(iw_pp.mean()),
            "ais_test": float(ais_pp.mean()),
            "ais_stderr": float(ais_pp.std(ddof=1) / np.sqrt(n)),
            "variational_gap": float((ais_pp - iw_pp).mean()),
            "generalisation_gap": result["generalisation_gap"],
            "active_units": result["active_units"],
            "kl_to_prior": result["kl_to_prior"],
            "train_points_per_sec": result["train_points_per_sec"],
            "ais_points_per_sec": ais["points_per_sec"],
        })
    all_points, k = next(iter(results.values()))["test_points"], iw["particles"]
    columns = [("method", "method"), ("iw_test_all", f"IW-{k} test ({all_points} pts)"),
               ("iw_test", f"IW-{k} test ({n} pts)"), ("ais_test", f"AIS test ({n} pts)"), ("ais_stderr", "± s.e."),
               ("variational_gap", "var. gap (AIS − IW)"), ("generalisation_gap", "gen. gap (IW train − test)"),
               ("active_units", "active units"), ("kl_to_prior", "KL(q‖p(z))"),
               ("train_points_per_sec", "train pts/s"), ("ais_points_per_sec", "AIS eval pts/s")]
    return markdown_table(rows, columns) + f"\nAIS: {ais['estimator']}.\n"


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("merge", "aiwae"):
        sys.exit(__doc__)
    try:
        print(merge(sys.argv[2:]) if sys.argv[1] == "merge" else aiwae_table(sys.argv[2]), end="")
    except MissingResultError as err:  # one line, as the deepem command says it
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
