"""Does the table budget keep DeepImputer's multiple imputations calibrated? The coverage of 90 % intervals
from its draws, beside the imputation RMSE, at several update budgets, on the tables the defaults were chosen
on (iris, white wine: benchmarks/table_defaults_sweep.py), never the reported ones.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/calibration_sweep.py --data-dir DATA_DIR
        [--budgets 250,500,1000,2000] [--rates 0.2,0.5] [--seeds 0,1,2] [--tables iris,wine-white] [--draws 19]

Every fit is `DeepImputer(max_iter=B, random_state=seed)` with the other defaults, on the table corrupted
MCAR with the seed (table_defaults_sweep.corrupt). RMSE of the masked cells in sd units (the observed
entries' sd); coverage: the share of masked cells inside the interval from the smallest to the largest of
`--draws` draws of `DeepImputer.sample` (exactly 90 % for a value exchangeable with 19 draws), and the mean
width of those intervals in sd units. Writes calibration_sweep.md and .json in --out."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from deepem.sklearn import DeepImputer
from table_defaults_sweep import corrupt, load_tables


def one_fit(table: np.ndarray, rate: float, seed: int, budget: int, draws: int) -> dict:
    data = corrupt(table, rate, seed)
    x, mask = data["truth"].numpy().astype(np.float64), data["mask"].numpy()  # standardised by observed cells
    incomplete = np.where(mask, x, np.nan)
    start = time.process_time()
    imputer = DeepImputer(max_iter=budget, random_state=seed).fit(incomplete)
    filled = imputer.transform(incomplete)
    samples = imputer.sample(incomplete, draws, random_state=seed)
    cpu = time.process_time() - start
    sd = np.nanstd(incomplete, axis=0)
    hidden = ~mask
    err = ((filled - x) / sd)[hidden]
    low, high = samples.min(axis=0), samples.max(axis=0)
    inside = (low <= x) & (x <= high)
    return {"rmse_sd": float(np.sqrt(np.mean(err ** 2))), "coverage90": float(inside[hidden].mean()),
            "width90_sd": float(((high - low) / sd)[hidden].mean()), "cpu_s": round(cpu, 2),
            "updates": int(imputer.n_iter_)}


def mean_cells(rows: list[dict]) -> str:
    """The mean RMSE, coverage and width of `rows` as three table cells."""
    return (f"{statistics.fmean(r['rmse_sd'] for r in rows):.3f} | "
            f"{statistics.fmean(r['coverage90'] for r in rows):.2f} | "
            f"{statistics.fmean(r['width90_sd'] for r in rows):.2f}")


def report(rows: list[dict], command: str, load: tuple) -> str:
    cells = sorted({(r["table"], r["rate"]) for r in rows})
    budgets = sorted({r["budget"] for r in rows})
    lines = ["# Calibration of DeepImputer's draws by update budget (sweep tables only)", "",
             f"Command: `{command}`. Load average before / after: {load[0]} / {load[1]}.", "",
             "RMSE of the masked cells (sd units), coverage of the 90 % interval from 19 draws (min to max), "
             "mean interval width (sd units); mean over seeds (n), MCAR.", "",
             "| table, rate | budget (updates) | epochs | RMSE | coverage | width | n |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for table, rate in cells:
        for b in budgets:
            mine = [r for r in rows if (r["table"], r["rate"], r["budget"]) == (table, rate, b)]
            if not mine:
                continue
            lines.append(f"| {table} {rate:g} | {b} | {mine[0]['epochs']:.0f} | {mean_cells(mine)} | {len(mine)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("DEEPEM_DATA", "data"))
    parser.add_argument("--budgets", default="250,500,1000,2000")
    parser.add_argument("--rates", default="0.2,0.5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tables", default="iris,wine-white")
    parser.add_argument("--draws", type=int, default=19)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--resume", action="store_true", help="keep the rows of an existing result; run the rest")
    a = parser.parse_args()
    tables = load_tables(Path(a.data_dir))
    command = ("OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/calibration_sweep.py --budgets "
               f"{a.budgets} --rates {a.rates} --seeds {a.seeds} --tables {a.tables} --draws {a.draws}")
    before, rows = tuple(round(v, 2) for v in os.getloadavg()), []
    out = Path(a.out)
    commands = [command]
    if a.resume and (out / "calibration_sweep.json").is_file():
        old = json.loads((out / "calibration_sweep.json").read_text())
        rows, before = old["rows"], tuple(old["load_average"][0])
        commands = [old["command"], *([command] if command != old["command"] else [])]
    done = {(r["table"], r["rate"], r["seed"], r["budget"]) for r in rows}
    for name in a.tables.split(","):
        for rate in (float(r) for r in a.rates.split(",")):
            for seed in (int(s) for s in a.seeds.split(",")):
                for budget in (int(b) for b in a.budgets.split(",")):
                    if (name, rate, seed, budget) in done:
                        continue
                    row = {"table": name, "rate": rate, "seed": seed, "budget": budget,
                           "epochs": budget * 64 / tables[name].shape[0]}
                    row |= one_fit(tables[name], rate, seed, budget, a.draws)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    load = (before, tuple(round(v, 2) for v in os.getloadavg()))
                    (out / "calibration_sweep.json").write_text(json.dumps(
                        {"command": " ; ".join(commands), "load_average": load, "rows": rows}, indent=2) + "\n")
                    (out / "calibration_sweep.md").write_text(report(rows, "` ; `".join(commands), load))


if __name__ == "__main__":
    main()
