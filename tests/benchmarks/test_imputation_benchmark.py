"""benchmarks/imputation_benchmark.py: the statistics it reports (paired t-intervals, sd-unit RMSE, exact
order-statistic intervals, verdicts) on known inputs, and a --quick run's files and their structure."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from imputation_benchmark import interval_coverage, main, sd_units_rmse  # noqa: E402
from imputation_report import paired_ci, paired_rows, verdict  # noqa: E402


def test_paired_ci_is_the_t_interval_of_the_differences():
    ci = paired_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.7764451051977987
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert ci["n"] == 5 and ci["mean"] == pytest.approx(3.0)
    assert ci["low"] == pytest.approx(3.0 - half, abs=1e-12) and ci["high"] == pytest.approx(3.0 + half, abs=1e-12)
    two = paired_ci([0.1, 0.3])  # t(0.975, 1) = 12.706204736174694, sd = 0.1 * sqrt(2)
    assert two["low"] == pytest.approx(0.2 - 12.706204736174694 * 0.1, abs=1e-12)
    assert paired_ci([0.5]) == {"mean": 0.5, "low": None, "high": None, "n": 1}
    assert paired_ci([])["mean"] is None


def test_verdict_reads_the_side_of_the_interval_by_direction():
    below = {"low": -0.3, "high": -0.1}
    assert verdict(below, higher_is_better=False) == "deepem better"
    assert verdict(below, higher_is_better=True) == "deepem worse"
    assert verdict({"low": -0.1, "high": 0.2}, False) == "no clear difference"
    assert verdict({"low": None, "high": None}, False) == "one seed: no interval"


def test_paired_rows_pair_seeds_against_the_best_baseline():
    def row(imputer: str, seed: int, rmse: float) -> dict:
        return {"table": "t", "mask": "mcar", "rate": 0.2, "seed": seed, "imputer": imputer, "rmse_sd": rmse}
    rows = [row("deepem", 0, 0.5), row("deepem", 1, 0.7), row("deepem", 2, 0.6),
            row("mean", 0, 1.0), row("mean", 1, 1.0), row("mean", 2, 1.0),
            row("knn", 0, 0.6), row("knn", 1, 0.9), row("knn", 2, 0.9)]  # best baseline by mean: knn
    (result,) = paired_rows(rows, "rmse_sd")
    assert result["baseline"] == "knn" and result["diffs"] == pytest.approx([-0.1, -0.2, -0.3])
    assert result["mean"] == pytest.approx(-0.2)
    assert result["high"] == pytest.approx(-0.2 + 4.302652729911275 * 0.1 / math.sqrt(3))  # t(0.975, 2)
    assert result["verdict"] == "no clear difference"  # high > 0: three seeds cannot tell


def test_sd_unit_rmse_and_exact_order_statistic_intervals():
    truth = np.array([[0.0, 10.0], [2.0, 30.0]])  # population sd: 1 and 10
    mask = np.array([[False, True], [True, False]])
    filled = np.array([[1.0, 10.0], [2.0, 50.0]])  # errors: 1 sd in column 0, 2 sd in column 1
    assert sd_units_rmse(filled, truth, mask) == pytest.approx(math.sqrt((1 + 4) / 2))
    draws = np.stack([truth + d for d in np.linspace(-1.0, 1.0, 19)])  # 19 draws: min to max
    coverage, width = interval_coverage(draws, truth, mask)
    assert coverage == 1.0 and width == pytest.approx((2 / 1 + 2 / 10) / 2)
    shifted = draws.copy()
    shifted[:, 1, 1] += 5.0  # the second missing cell's draws all above its truth
    assert interval_coverage(shifted, truth, mask)[0] == 0.5


def test_quick_run_writes_both_files_with_paired_intervals(tmp_path):
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "imputation_benchmark.json").read_text())
    assert record["command"] == f"python benchmarks/imputation_benchmark.py --quick --out {tmp_path}"
    assert record["plan"] == {"tables": ["wine"], "masks": ["mcar", "mnar"], "rates": [0.2], "seeds": [0, 1],
                              "imputers": ["deepem", "mean", "knn"]}
    assert len(record["machine_start"]["load_average_1_5_15"]) == 3
    rows = record["rows"]
    assert len(rows) == 2 * 2 * 3  # seeds x masks x imputers
    for r in rows:
        assert 0 < r["rmse_sd"] < 5 and 0 < r["downstream"] <= 1 and r["fit_transform_s"] >= 0
        assert ("coverage90" in r) == (r["imputer"] == "deepem")
    # the same seed and mask for every imputer of a cell
    fractions = {(r["mask"], r["seed"]): set() for r in rows}
    for r in rows:
        fractions[(r["mask"], r["seed"])].add(r["missing_fraction"])
    assert all(len(f) == 1 for f in fractions.values())
    paired = [p for p in record["paired"] if p["metric"] == "rmse_sd"]
    assert {(p["mask"], p["deepem"]) for p in paired} == {("mcar", "deepem"), ("mnar", "deepem")}
    for p in paired:  # the stored interval is the t-interval of the stored differences
        assert p["n"] == 2 and p["mean"] == pytest.approx(np.mean(p["diffs"]))
        assert (p["low"], p["high"]) == pytest.approx((paired_ci(p["diffs"])["low"], paired_ci(p["diffs"])["high"]))
    text = (tmp_path / "imputation_benchmark.md").read_text()
    assert "Scope: REDUCED" in text and "## Verdict" in text and "deepem − best baseline" in text
    # --report-only rewrites the same report from the JSON alone
    (tmp_path / "imputation_benchmark.md").unlink()
    assert main(["--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "imputation_benchmark.md").read_text() == text
    # nothing overwritten without --force; a bad flag is one line
    assert main(["--quick", "--out", str(tmp_path)]) == 2
    assert main(["--quick", "--out", str(tmp_path / "other"), "--tables", "nosuch"]) == 2
    assert main(["--quick", "--out", str(tmp_path / "other"), "--draws", "20"]) == 2


def test_merge_joins_parts_and_refuses_a_cell_run_twice(tmp_path):
    from imputation_report import write

    def part(table: str, hour: int) -> dict:
        machine = {"time_utc": f"2026-01-01 0{hour}:00:00", "cpus": 2, "load_average_1_5_15": [1.0, 1.0, 1.0],
                   "torch_threads": 1}
        return {"command": f"python benchmarks/imputation_benchmark.py --tables {table}", "settings": {},
                "plan": {"tables": [table], "masks": ["mcar"], "rates": [0.2], "seeds": [0, 1],
                         "imputers": ["deepem", "mean"]},
                "budgets": {}, "machine_start": machine, "machine_end": machine, "skipped": {},
                "tables": {table: {"rows": 10, "columns": 2, "task": "none", "binary": False, "note": ""}}}

    def rows(table: str, gain: float) -> list[dict]:
        return [{"table": table, "mask": "mcar", "rate": 0.2, "seed": s, "imputer": name,
                 "fit_transform_s": 1.0, "rmse_sd": 1.0 - (gain * (1 + s) if name == "deepem" else 0.0)}
                for s in (0, 1) for name in ("deepem", "mean")]
    write(tmp_path / "a", part("t1", 1), rows("t1", 0.1))
    write(tmp_path / "b", part("t2", 2), rows("t2", -0.1))
    out = tmp_path / "joined"
    assert main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    record = json.loads((out / "imputation_benchmark.json").read_text())
    assert len(record["rows"]) == 8 and record["plan"]["tables"] == ["t1", "t2"]
    assert set(record["tables"]) == {"t1", "t2"} and record["machine_end"]["time_utc"].startswith("2026-01-01 02")
    diffs = {p["table"]: p["diffs"] for p in record["paired"] if p["metric"] == "rmse_sd"}
    assert diffs["t1"] == pytest.approx([-0.1, -0.2]) and diffs["t2"] == pytest.approx([0.1, 0.2])
    assert main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 2  # no --force
    assert main(["--merge", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(out), "--force"]) == 2  # twice
