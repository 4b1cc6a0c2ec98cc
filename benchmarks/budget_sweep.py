"""Which table budget keeps DeepImputer's draws calibrated on small tables without costing imputation error?
A cap in epochs on the default budget in updates, chosen on tables never reported: iris (150 rows) and row
subsets of the white wine table (150, 450 and 1200 rows, a different subset for each seed), MCAR.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/budget_sweep.py --data-dir DATA_DIR
        [--caps 50,100,200,400] [--rates 0.2,0.5] [--seeds 0,1,2] [--draws 19]

A cap of E epochs makes the budget min(2000, round(E * rows / 64)) updates (64 = the table batch size); cap 0
is the budget without a cap (2000 updates). Each fit is `DeepImputer(max_iter=budget, random_state=seed)`
with the other defaults (calibration_sweep.one_fit: RMSE of the masked cells in sd units, coverage of the
interval from the smallest to the largest of 19 draws, exactly 90 % for an exchangeable value).

The rule, fixed before any fit was run: over all (table, rate) cells, the cap whose mean |coverage - 0.90|
is at most 0.02 and, among those, the lowest mean RMSE; if no cap qualifies, the one whose mean coverage
error is smallest. Writes budget_sweep.md and .json in --out."""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import numpy as np

from calibration_sweep import mean_cells, one_fit
from table_defaults_sweep import load_tables

BATCH, MAX_UPDATES = 64, 2000
SUBSETS = (150, 450, 1200)


def sweep_table(tables: dict[str, np.ndarray], name: str, seed: int) -> np.ndarray:
    """iris, or `wine-white-N`: N rows of the white wine table drawn without replacement by the seed."""
    if name == "iris":
        return tables["iris"]
    rows = int(name.rsplit("-", 1)[1])
    pick = np.random.default_rng(1000 + seed).choice(tables["wine-white"].shape[0], rows, replace=False)
    return tables["wine-white"][np.sort(pick)]


def budget(cap: int, rows: int) -> int:
    return MAX_UPDATES if cap == 0 else min(MAX_UPDATES, max(1, round(cap * rows / BATCH)))


def choose(rows: list[dict]) -> tuple[int, dict[int, dict[str, float]]]:
    """The pre-registered rule (module docstring) over the mean of each (table, rate) cell."""
    cells = sorted({(r["table"], r["rate"]) for r in rows})
    summary: dict[int, dict[str, float]] = {}
    for cap in sorted({r["cap"] for r in rows}):
        per_cell = [[r for r in rows if r["cap"] == cap and (r["table"], r["rate"]) == c] for c in cells]
        per_cell = [c for c in per_cell if c]
        summary[cap] = {
            "rmse": statistics.fmean(statistics.fmean(r["rmse_sd"] for r in c) for c in per_cell),
            "coverage_error": statistics.fmean(abs(statistics.fmean(r["coverage90"] for r in c) - 0.9)
                                               for c in per_cell),
            "updates": statistics.fmean(statistics.fmean(r["updates"] for r in c) for c in per_cell)}
    ok = [cap for cap, s in summary.items() if s["coverage_error"] <= 0.02]
    chosen = min(ok, key=lambda cap: summary[cap]["rmse"]) if ok else \
        min(summary, key=lambda cap: summary[cap]["coverage_error"])
    return chosen, summary


def report(rows: list[dict], command: str, load: tuple) -> str:
    chosen, summary = choose(rows)
    name = {0: "none (2000 updates)"}
    lines = ["# A cap in epochs on the table budget (sweep tables only)", "",
             f"Command: `{command}`. Load average before / after: {load[0]} / {load[1]}.", "",
             "RMSE of the masked cells (sd units), coverage of the 90 % interval from 19 draws (min to max), mean "
             "interval width (sd units); mean over seeds (n), MCAR. The budget is min(2000, cap x rows / 64) updates.",
             "", "| table, rate | cap (epochs) | updates | RMSE | coverage | width | CPU s | n |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for table, rate in sorted({(r["table"], r["rate"]) for r in rows}):
        for cap in sorted({r["cap"] for r in rows}):
            mine = [r for r in rows if (r["table"], r["rate"], r["cap"]) == (table, rate, cap)]
            if mine:
                lines.append(f"| {table} {rate:g} | {name.get(cap, cap)} | {mine[0]['updates']} | "
                             f"{mean_cells(mine)} | {statistics.fmean(r['cpu_s'] for r in mine):.1f} | {len(mine)} |")
    lines += ["", "Over all cells (mean of the cells' means):", "",
              "| cap (epochs) | mean updates | mean RMSE | mean abs(coverage - 0.90) |", "| --- | --- | --- | --- |"]
    lines += [f"| {name.get(cap, cap)} | {s['updates']:.0f} | {s['rmse']:.4f} | {s['coverage_error']:.3f} |"
              for cap, s in summary.items()]
    lines += ["", f"Chosen by the pre-registered rule: **cap {name.get(chosen, chosen)}**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("DEEPEM_DATA", "data"))
    parser.add_argument("--caps", default="50,100,200,400")
    parser.add_argument("--rates", default="0.2,0.5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tables", default="iris," + ",".join(f"wine-white-{n}" for n in SUBSETS))
    parser.add_argument("--draws", type=int, default=19)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--resume", action="store_true", help="keep the rows of an existing result; run the rest")
    a = parser.parse_args()
    tables = load_tables(Path(a.data_dir))
    command = ("OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/budget_sweep.py --caps "
               f"{a.caps} --rates {a.rates} --seeds {a.seeds} --tables {a.tables} --draws {a.draws}")
    before, rows, out = tuple(round(v, 2) for v in os.getloadavg()), [], Path(a.out)
    if a.resume and (out / "budget_sweep.json").is_file():
        old = json.loads((out / "budget_sweep.json").read_text())
        rows, before = old["rows"], tuple(old["load_average"][0])
    done = {(r["table"], r["rate"], r["seed"], r["cap"]) for r in rows}
    caps = [0] + [int(c) for c in a.caps.split(",")]
    for seed in (int(s) for s in a.seeds.split(",")):
        for name in a.tables.split(","):
            table = sweep_table(tables, name, seed)
            for rate in (float(r) for r in a.rates.split(",")):
                budgets: dict[int, dict] = {}  # caps that give the same budget share one fit
                for cap in caps:
                    if (name, rate, seed, cap) in done:
                        continue
                    b = budget(cap, table.shape[0])
                    if b not in budgets:
                        budgets[b] = one_fit(table, rate, seed, b, a.draws)
                    row = {"table": name, "rate": rate, "seed": seed, "cap": cap, "rows": table.shape[0],
                           **budgets[b]}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    load = (before, tuple(round(v, 2) for v in os.getloadavg()))
                    (out / "budget_sweep.json").write_text(json.dumps(
                        {"command": command, "load_average": load, "rows": rows}, indent=2) + "\n")
                    (out / "budget_sweep.md").write_text(report(rows, command, load))


if __name__ == "__main__":
    main()
