"""Where the table defaults' stopping rule and update budget come from (models/config.py TABLE_DEFAULTS):
fixed budgets against the held-out-cells rule, on the sweep tables of table_defaults_sweep.py (iris and
UCI wine quality white, never reported by the imputation benchmark), MCAR 20 % and 50 %, seeds 0, 1, 2
(mask seed = fit seed), scored by the RMSE of the MASKED cells in sd units.

    OMP_NUM_THREADS=1 python benchmarks/stopping_sweep.py --part fixed [--cpu-minutes 12]
    OMP_NUM_THREADS=1 python benchmarks/stopping_sweep.py --part rule [--fractions 0.1,0.2,0.05] [--tag=-b]
    python benchmarks/stopping_sweep.py --merge

Every fit goes through the library's own path: the settings of `DeepImputer(...)` over the table defaults
(`run_config(..., table_columns=d)`), the Trainer of `build_trainer`, the data standardised with the observed
cells as fit does. What differs from a plain `DeepImputer.fit` is only how the runs are shared, and both ways
give the same numbers as separate fits would:
- fixed budgets (no stopping): one run to 4000 updates, its masked-cell RMSE taken at 500, 1000, 2000 and
  4000 (the Trainer continues from where it stands when its max_iter is raised: the same updates as a
  run with that budget);
- the rule (validation_fraction f, checks every 50 updates, tol 0, cap 4000 updates): one run per f with
  patience 10; the model is copied at every check, and where patience 5 would have stopped (its first 5
  checks in a row without a new best) is read off the same checks, the model kept being that rule's best
  check (the trajectory of the parameters does not depend on the patience).
Imputation of the masked cells: the self-normalised IS mean with 100 particles (evaluation/own_rows.py).
CPU seconds: this process's CPU time of the training (checks included), imputation of the masked cells not.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from deepem.data.base import DataSplits
from deepem.sklearn import DeepImputer
from deepem.workflows.assembly import build_trainer, run_config
from table_defaults_sweep import corrupt, impute_rmse, load_tables

RATES = (0.2, 0.5)
SEEDS = (0, 1, 2)
BUDGETS = (500, 1000, 2000, 4000)
FRACTIONS = (0.05, 0.1, 0.2)
PATIENCES = (5, 10)
CAP = 4000
EVERY = 50


def trainer_for(estimator: DeepImputer, data: dict[str, torch.Tensor], seed: int):  # noqa: ANN201
    """The Trainer DeepImputer.fit builds for the standardised table `data` (its settings, its config)."""
    x, mask = data["x"], data["mask"]
    n, d = x.shape
    config = run_config(estimator.settings(seed), table_columns=d)
    config.batch_size = min(config.batch_size, n)
    empty = torch.zeros(0, d)
    splits = DataSplits("scikit-learn", x, empty, empty, "gaussian", train_mask=mask, valid_mask=empty.bool(),
                        test_mask=empty.bool())
    trainer = build_trainer(config, None, splits, log=lambda _: None, progress=False)
    trainer.start()
    return trainer


def fixed(data: dict[str, torch.Tensor], seed: int) -> list[dict[str, Any]]:
    trainer = trainer_for(DeepImputer(max_iter=BUDGETS[0], validation_fraction=0.0), data, seed)
    out, cpu = [], 0.0
    for budget in BUDGETS:
        trainer.config.max_iter = budget
        start = time.process_time()
        trainer.fit()
        cpu += time.process_time() - start
        rmse = impute_rmse(trainer.model, data, seed)
        trainer.model.train()
        out.append({"rule": f"fixed {budget}", "updates": trainer.state.step, "kept": trainer.state.step,
                    "rmse": rmse, "cpu_s": round(cpu, 2)})
    return out


def rule(data: dict[str, torch.Tensor], seed: int, fraction: float) -> list[dict[str, Any]]:
    estimator = DeepImputer(max_iter=CAP, validation_fraction=fraction, n_iter_no_change=max(PATIENCES), tol=0.0,
                            valid_every_steps=EVERY)
    trainer = trainer_for(estimator, data, seed)
    snapshots: list[tuple[dict[str, torch.Tensor], float]] = []  # (parameters, process time) at each check
    original = trainer.validate

    def watched(model: torch.nn.Module):  # noqa: ANN202
        result = original(model)
        snapshots.append((copy.deepcopy(model.state_dict()), time.process_time()))
        return result

    trainer.validate = watched
    start = time.process_time()
    trainer.fit()
    checks = [r for r in trainer.state.history if r.get("kind") == "valid"]
    assert len(checks) == len(snapshots)
    out = []
    for patience in PATIENCES:
        best, best_at, stale, stop = -float("inf"), 0, 0, len(checks) - 1
        for i, r in enumerate(checks):
            if r["valid_bound"] > best:
                best, best_at, stale = r["valid_bound"], i, 0
            else:
                stale += 1
                if stale >= patience:
                    stop = i
                    break
        trainer.model.load_state_dict(snapshots[best_at][0])
        out.append({"rule": f"f={fraction} p={patience}", "updates": checks[stop]["step"],
                    "kept": checks[best_at]["step"], "rmse": impute_rmse(trainer.model, data, seed),
                    "held_out_rmse": -checks[best_at]["valid_bound"],
                    "cpu_s": round(snapshots[stop][1] - start, 2)})
    return out


def uptime_load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average:")[-1].strip()


def run_part(a: argparse.Namespace) -> None:
    tables = load_tables(Path(a.data_dir))
    path = Path(a.out) / f"stopping_sweep.part-{a.part}{a.tag}.json"
    fits: list[dict[str, Any]] = []
    load_before, start, cut = uptime_load(), time.process_time(), []
    fractions = tuple(float(f) for f in a.fractions.split(",")) if a.fractions else FRACTIONS
    # the fractions in the order given, each over all seeds, so that a cap cuts the last fraction first
    jobs = [(t, r, s, f) for f in (fractions if a.part == "rule" else (None,)) for s in SEEDS for t in tables
            for r in RATES]
    done = {(f["table"], f["rate"], f["seed"], float(f["rule"].split()[0][2:]) if a.part == "rule" else None)
            for p in Path(a.out).glob(f"stopping_sweep.part-{a.part}*.json") if p != path
            for f in json.loads(p.read_text())["fits"]}  # fits another part of the same kind has
    for name, rate, seed, fraction in jobs:
        if (name, rate, seed, fraction) in done:
            continue
        if time.process_time() - start > a.cpu_minutes * 60:
            cut.append(f"{name} {rate} seed {seed}" + ("" if fraction is None else f" f={fraction}"))
            continue
        data = corrupt(tables[name], rate, seed)
        rows = fixed(data, seed) if fraction is None else rule(data, seed, fraction)
        fits += [{"table": name, "rate": rate, "seed": seed, **r} for r in rows]
        path.write_text(json.dumps({"part": a.part, "load_before": load_before, "load_after": uptime_load(),
                                    "cpu_minutes": (time.process_time() - start) / 60, "cut": cut,
                                    "fits": fits}, indent=1))
    path.write_text(json.dumps({"part": a.part, "load_before": load_before, "load_after": uptime_load(),
                                "cpu_minutes": (time.process_time() - start) / 60, "cut": cut, "fits": fits},
                               indent=1))


def summarise(fits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rule: mean masked RMSE per table and rate, mean over all, its difference from fixed 1000 paired."""
    cells = sorted({(f["table"], f["rate"]) for f in fits})
    base = {(f["table"], f["rate"], f["seed"]): f["rmse"] for f in fits if f["rule"] == "fixed 1000"}
    rows = []
    for rule_name in dict.fromkeys(f["rule"] for f in fits):
        mine = [f for f in fits if f["rule"] == rule_name]
        diffs = [f["rmse"] - base[(f["table"], f["rate"], f["seed"])] for f in mine
                 if (f["table"], f["rate"], f["seed"]) in base]
        row = {"rule": rule_name, "n": len(mine), "mean": statistics.mean(f["rmse"] for f in mine),
               "diff": statistics.mean(diffs) if diffs else float("nan"),
               "sd_diff": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
               "better": sum(d < 0 for d in diffs), "paired": len(diffs),
               "updates": statistics.mean(f["updates"] for f in mine),
               "updates_range": (min(f["updates"] for f in mine), max(f["updates"] for f in mine)),
               "cpu_s": statistics.mean(f["cpu_s"] for f in mine)}
        for table, rate in cells:
            values = [f["rmse"] for f in mine if (f["table"], f["rate"]) == (table, rate)]
            row[f"{table} {rate:.0%}"] = (statistics.mean(values), statistics.pstdev(values)) if values else None
            ups = [f["updates"] for f in mine if (f["table"], f["rate"]) == (table, rate)]
            row[f"updates {table} {rate:.0%}"] = statistics.mean(ups) if ups else None
        rows.append(row)
    return rows


def merge(out: Path) -> None:
    parts = [json.loads(p.read_text()) for p in sorted(out.glob("stopping_sweep.part-*.json"))]
    fits = [f for p in parts for f in p["fits"]]
    rows = summarise(fits)
    cells = sorted({(f["table"], f["rate"]) for f in fits})
    meta = {"load": " / ".join(f"{p['part']}: {p['load_before']} -> {p['load_after']}" for p in parts),
            "cpu_minutes": sum(p["cpu_minutes"] for p in parts), "cut": [c for p in parts for c in p["cut"]]}
    (out / "stopping_sweep.json").write_text(json.dumps({**meta, "rows": rows, "fits": fits}, indent=1))
    names = [f"{t} {r:.0%}" for t, r in cells]
    lines = ["# Stopping rule and update budget (MIWAE, table defaults, on iris and wine-white)", "",
             "Command: `OMP_NUM_THREADS=1 python benchmarks/stopping_sweep.py --part fixed & OMP_NUM_THREADS=1 "
             "python benchmarks/stopping_sweep.py --part rule; python benchmarks/stopping_sweep.py --merge`", "",
             f"Seeds {list(SEEDS)} (mask seed = fit seed); MCAR {', '.join(f'{r:.0%}' for r in RATES)}; RMSE of the "
             "masked cells in sd units, mean over seeds (population sd over seeds in brackets); checks every "
             f"{EVERY} updates, tol 0, cap {CAP} updates. Load average (1, 5, 15 min) before -> after each part: "
             f"{meta['load']}. CPU time of all parts: {meta['cpu_minutes']:.1f} min. Cut: "
             f"{', '.join(meta['cut']) or 'nothing'}.", "",
             "| rule | " + " | ".join(names) + " | mean | diff vs fixed 1000 (sd) | better in | updates used "
             "(mean, min-max) | CPU s | fits |",
             "|---" * (len(names) + 7) + "|"]
    for r in rows:
        cols = [f"{r[n][0]:.4f} ({r[n][1]:.3f})" if r[n] else "-" for n in names]
        lines.append(f"| {r['rule']} | " + " | ".join(cols) + f" | {r['mean']:.4f} | {r['diff']:+.4f} "
                     f"({r['sd_diff']:.4f}) | {r['better']}/{r['paired']} | {r['updates']:.0f} "
                     f"({r['updates_range'][0]}-{r['updates_range'][1]}) | {r['cpu_s']:.1f} | {r['n']} |")
    lines += ["", "Updates used per table and rate (mean over seeds):", "",
              "| rule | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['rule']} | " + " | ".join(f"{r['updates ' + n]:.0f}" if r['updates ' + n] else "-"
                                                      for n in names) + " |")
    (out / "stopping_sweep.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("fixed", "rule"))
    p.add_argument("--merge", action="store_true")
    p.add_argument("--cpu-minutes", type=float, default=12.0)
    p.add_argument("--fractions", default="", help="rule part: validation fractions, in the order run")
    p.add_argument("--tag", default="", help="a suffix of the part's file name (parts that share the work)")
    p.add_argument("--data-dir", default="/work/shared/data")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.merge:
        merge(Path(a.out))
    else:
        run_part(a)


if __name__ == "__main__":
    main()
