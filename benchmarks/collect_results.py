"""Tables from finished run folders.

    python benchmarks/collect_results.py merge runs/a runs/b ...   # rows of `compare` folders or run folders
    python benchmarks/collect_results.py aiwae runs/aiwae-mnist    # IW and AIS log-likelihoods, gaps

Each `compare` folder holds results.json; each run folder holds evaluations/<estimator>-<split>.json with
per-point values beside it, so the AIS and IW estimates can be compared on exactly the same points."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from deepem.report.compare import COLUMNS, run_row
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


def aiwae_table(folder: str) -> str:
    root = Path(folder)
    runs = sorted((p.parent.parent for p in root.glob("*/evaluations/ais-test.json")),
                  key=lambda run: (run / "config.json").stat().st_mtime)  # in training order
    results = {run.name: run_row(run, run.name) for run in runs}  # from the newest evaluations on disk
    rows = []
    for name, result in results.items():
        evals = root / name / "evaluations"
        ais = json.loads((evals / "ais-test.json").read_text())
        n = ais["n_points"]
        ais_pp = np.load(evals / "ais-test-per-point.npy")
        iw_pp = np.load(evals / "iw-test-per-point.npy")[:n]  # the same first n test points
        rows.append({
            "method": name,
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
    all_points = next(iter(results.values()))["test_points"]
    columns = [("method", "method"), ("iw_test_all", f"IW-5000 test ({all_points} pts)"),
               ("iw_test", f"IW-5000 test ({n} pts)"), ("ais_test", f"AIS test ({n} pts)"), ("ais_stderr", "± s.e."),
               ("variational_gap", "var. gap (AIS − IW)"), ("generalisation_gap", "gen. gap (IW train − test)"),
               ("active_units", "active units"), ("kl_to_prior", "KL(q‖p(z))"),
               ("train_points_per_sec", "train pts/s"), ("ais_points_per_sec", "AIS eval pts/s")]
    return markdown_table(rows, columns) + f"\nAIS: {ais['estimator']}.\n"


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("merge", "aiwae"):
        sys.exit(__doc__)
    print(merge(sys.argv[2:]) if sys.argv[1] == "merge" else aiwae_table(sys.argv[2]), end="")


if __name__ == "__main__":
    main()
