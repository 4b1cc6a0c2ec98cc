"""Where the table defaults (models/config.py TABLE_DEFAULTS) come from: a sweep of MIWAE's settings on two
tables that the imputation benchmark (uci_imputation.py) does not report, scored by the imputation RMSE of
the masked cells in standard-deviation units.

    OMP_NUM_THREADS=1 python benchmarks/table_defaults_sweep.py [--updates 1000] [--cpu-minutes 20]
                         [--wall-minutes M] [--rates 0.2,0.5] [--only 'K=50;...'] [--out benchmarks/results]
    python benchmarks/table_defaults_sweep.py --merge

A process with a subset of the rates (--rates) or settings (--only) writes a part (rewritten after every fit,
so a stopped part keeps what it did); --merge turns the parts into the results. Parts let the sweep run on
both cores, and a part stopped by a cap be completed by another.

Tables: iris (scikit-learn's bundled copy, 150 x 4) and UCI wine quality, white (4898 x 11, the quality
column dropped; $DEEPEM_DATA/uci/winequality_white.csv). Each is corrupted MCAR at 20 % and 50 % with two
mask seeds; a fit uses that seed for its weights and batches too. The columns are standardised with their
observed entries, so the RMSE of the masked cells is in sd units (the column mean gives about 1).

Design: one factor at a time around the current defaults (3 x 128 tanh, latent d - 1, K = 20, batch 64,
lr 1e-3), each factor at its two other levels: width 64/256, depth 1/2, latent d/2 (rounded up) and d,
K 5/50, batch 32/128, lr 3e-4/3e-3. 13 settings x 2 tables x 2 rates x 2 seeds. It answers "does moving one
setting away from the defaults help", not interactions: a full 3^6 grid is 56 times the compute. The
defaults' fits also record the RMSE after a quarter and a half of the updates (are fewer updates as good?).

Every fit takes the same number of updates (--updates), not epochs: the step is the library's (TrainStep,
training/step.py, Adam with the trainer's settings), batches drawn epoch by epoch from a seeded
permutation of the rows in memory. Imputation: the self-normalised importance-sampling mean of
evaluation/own_rows.py with 100 particles. Compute cap: --cpu-minutes of this process's CPU time; settings
are run in the order listed, and the ones the cap leaves out are listed as cut in the results.

Writes table_defaults_sweep.json (every fit) and table_defaults_sweep.md (means over seeds, the difference
from the defaults with its spread over the 8 paired fits)."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepem.evaluation.own_rows import impute_rows
from deepem.methods.registry import make_method
from deepem.models import ModelConfig, make_model
from deepem.training.config import TrainConfig
from deepem.training.data_order import batches_per_epoch, epoch_data
from deepem.training.optim import group_settings, parameter_groups
from deepem.training.step import TrainStep

DEFAULTS: dict[str, Any] = {"width": 128, "depth": 3, "latent": "d-1", "particles": 20, "batch_size": 64, "lr": 1e-3}
#: the other levels of each factor
LEVELS: dict[str, list[Any]] = {"width": [64, 256], "depth": [1, 2], "latent": ["d/2", "d"], "particles": [5, 50],
                                "batch_size": [32, 128], "lr": [3e-4, 3e-3]}
#: the order the settings are run in: the cheaper first, so that a cap cuts the costliest
ORDER = [("lr", 3e-4), ("lr", 3e-3), ("latent", "d/2"), ("latent", "d"), ("depth", 1), ("depth", 2), ("width", 64),
         ("particles", 5), ("batch_size", 32), ("batch_size", 128), ("particles", 50), ("width", 256)]
RATES = (0.2, 0.5)
SEEDS = (0, 1)
IMPUTE_PARTICLES = 100


def settings_list() -> list[dict[str, Any]]:
    assert sorted(ORDER, key=str) == sorted(((f, v) for f, vs in LEVELS.items() for v in vs), key=str)
    return [dict(DEFAULTS)] + [{**DEFAULTS, factor: level} for factor, level in ORDER]


def label(s: dict[str, Any]) -> str:
    changed = [f"{k}={v}" for k, v in s.items() if v != DEFAULTS[k]]
    return ", ".join(changed) or "defaults"


def latent_dim(spec: str, d: int) -> int:
    return {"d-1": max(1, d - 1), "d/2": math.ceil(d / 2), "d": d}[spec]


def load_tables(data_dir: Path) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_iris
    wine = np.loadtxt(data_dir / "uci" / "winequality_white.csv", delimiter=",", skiprows=1)[:, :-1]
    return {"iris": load_iris().data.astype(np.float64), "wine-white": wine}


def corrupt(table: np.ndarray, rate: float, seed: int) -> dict[str, torch.Tensor]:
    """MCAR mask (True = observed), the table standardised with its observed entries (missing set to 0),
    and the complete table on the same scale."""
    rng = np.random.default_rng(seed)
    mask = rng.random(table.shape) >= rate
    obs = np.where(mask, table, np.nan)
    mean, std = np.nanmean(obs, 0), np.nanstd(obs, 0)
    std = np.where(std > 0, std, 1.0)
    truth = (table - mean) / std
    return {"x": torch.from_numpy(np.where(mask, truth, 0.0)).float(), "mask": torch.from_numpy(mask),
            "truth": torch.from_numpy(truth)}


def fit(s: dict[str, Any], data: dict[str, torch.Tensor], seed: int, updates: int,
        report_at: tuple[int, ...]) -> dict[str, Any]:
    """Train MIWAE with settings `s` for `updates` steps; RMSE of the masked cells at each of `report_at`."""
    x, mask = data["x"], data["mask"]
    n, d = x.shape
    torch.manual_seed(seed)
    model = make_model(ModelConfig(latent_dim=latent_dim(s["latent"], d), hidden=[s["width"]] * s["depth"],
                                   activation="tanh", likelihood="gaussian"), d, torch.zeros(d))
    method = make_method("miwae", particles=s["particles"])
    method.bind(model)
    groups = list(parameter_groups(model, method))
    step = TrainStep(model, method, group_settings(groups, {}, s["lr"], TrainConfig().adam_eps))
    batch = min(s["batch_size"], n)
    per_epoch = batches_per_epoch(n, batch)
    rmse: dict[int, float] = {}
    start = time.process_time()
    done, epoch = 0, 0
    while done < updates:
        order, rows = epoch_data(x, seed, epoch, False, mask)
        for b in range(per_epoch):
            idx = order[b * batch:(b + 1) * batch]
            result = step(rows[idx], mask[idx])
            if result.problem:
                raise RuntimeError(f"{label(s)}: {result.problem}")
            done += 1
            if done in report_at:
                rmse[done] = impute_rmse(model, data, seed)
                model.train()
            if done == updates:
                break
        epoch += 1
    return {"rmse": rmse[updates], "rmse_at": {str(k): v for k, v in rmse.items()},
            "cpu_s": round(time.process_time() - start, 2)}


def impute_rmse(model: torch.nn.Module, data: dict[str, torch.Tensor], seed: int) -> float:
    model.eval()
    with torch.no_grad():
        imputed = impute_rows(model, data["x"], data["mask"], IMPUTE_PARTICLES, 0, "zero-filled", seed).imputed
    missing = ~data["mask"]
    return float((imputed.double() - data["truth"])[missing].pow(2).mean().sqrt())


def summarise(fits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: mean RMSE per (table, rate) and the paired difference from the defaults."""
    base = {(f["table"], f["rate"], f["seed"]): f["rmse"] for f in fits if f["setting"] == "defaults"}
    rows = []
    order = [label(s) for s in settings_list()]
    for name in sorted({f["setting"] for f in fits}, key=order.index):
        own = [f for f in fits if f["setting"] == name]
        cells = {}
        for f in own:
            cells.setdefault(f"{f['table']} {int(f['rate'] * 100)}%", []).append(f["rmse"])
        diffs = [f["rmse"] - base[(f["table"], f["rate"], f["seed"])] for f in own
                 if (f["table"], f["rate"], f["seed"]) in base]
        rel = [f["rmse"] / base[(f["table"], f["rate"], f["seed"])] - 1 for f in own
               if (f["table"], f["rate"], f["seed"]) in base]
        rows.append({"setting": name, "cells": {k: statistics.mean(cells[k]) for k in sorted(cells)},
                     "mean_diff": statistics.mean(diffs), "mean_rel_diff": statistics.mean(rel),
                     "sd_diff": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
                     "better_in": sum(x < 0 for x in diffs), "pairs": len(diffs),
                     "cpu_s": round(sum(f["cpu_s"] for f in own), 1)})
    return rows


def write_md(path: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0]["cells"])
    lines = ["# Table defaults sweep (MIWAE on iris and wine-white, not reported by uci_imputation)", "",
             f"Command: `{meta['command']}`", "",
             f"{meta['updates']} updates per fit; MCAR {', '.join(f'{int(r * 100)} %' for r in RATES)}; "
             f"seeds {list(SEEDS)}; imputation with {IMPUTE_PARTICLES} particles; RMSE of the masked cells in sd "
             f"units (lower is better). Load average before / after each part: {meta['load_before']} / "
             f"{meta['load_after']}. CPU time of all parts: {meta['cpu_minutes']:.1f} min (their caps: "
             f"{meta['cap_minutes']:g} min; a setting started before its part's cap is finished; a fit that two "
             "parts ran counts once in the table).", "",
             "| setting | " + " | ".join(cols)
             + " | mean diff vs defaults | sd of diff | rel. diff | better in | CPU s |",
             "|" + "---|" * (len(cols) + 6)]
    for r in rows:
        lines.append(f"| {r['setting']} | " + " | ".join(f"{r['cells'].get(c, float('nan')):.4f}" for c in cols)
                     + f" | {r['mean_diff']:+.4f} | {r['sd_diff']:.4f} | {100 * r['mean_rel_diff']:+.1f} % "
                     f"| {r['better_in']}/{r['pairs']} | {r['cpu_s']} |")
    if meta["cut"]:
        lines += ["", "Cut by the CPU cap (not run): " + "; ".join(meta["cut"]) + "."]
    if meta.get("fewer_updates"):
        lines += ["", "The defaults' RMSE after fewer updates (mean over the 8 fits): "
                  + ", ".join(f"{k} updates: {v:.4f}" for k, v in meta["fewer_updates"].items()) + "."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--cpu-minutes", type=float, default=20.0, help="CPU cap of this process")
    parser.add_argument("--wall-minutes", type=float, default=math.inf,
                        help="no setting is started after this many minutes of wall-clock time")
    parser.add_argument("--rates", default=",".join(map(str, RATES)),
                        help="the missing rates this process runs (a part, merged by --merge)")
    parser.add_argument("--only", default="", help="run only these settings (labels, separated by ';')")
    parser.add_argument("--merge", action="store_true", help="merge the parts written in --out into the results")
    parser.add_argument("--data-dir", default=os.environ.get("DEEPEM_DATA", "/work/shared/data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = parser.parse_args()
    out = Path(a.out)
    if a.merge:
        merge(out)
        return
    torch.set_num_threads(1)
    rates = tuple(float(r) for r in a.rates.split(","))
    load_before = uptime_load()
    tables = load_tables(Path(a.data_dir))
    fits: list[dict[str, Any]] = []
    cut: list[str] = []
    start, wall_start = time.process_time(), time.perf_counter()
    report = (a.updates // 4, a.updates // 2, a.updates)
    only = [x.strip() for x in a.only.split(";") if x.strip()]
    part_path = out / f"table_defaults_sweep.part-{a.rates}{'-' + '-'.join(only) if only else ''}.json"
    out.mkdir(parents=True, exist_ok=True)
    for s in settings_list():
        name = label(s)
        if only and name not in only:
            continue
        if time.process_time() - start > 60 * a.cpu_minutes or time.perf_counter() - wall_start > 60 * a.wall_minutes:
            cut.append(name)
            continue
        for table, values in tables.items():
            for rate in rates:
                for seed in SEEDS:
                    data = corrupt(values, rate, seed)
                    r = fit(s, data, seed, a.updates, report if name == "defaults" else (a.updates,))
                    fits.append({"setting": name, **s, "table": table, "rate": rate, "seed": seed, **r})
                    print(f"{name:28s} {table:10s} {rate:.1f} {seed}  rmse {r['rmse']:.4f}  cpu {r['cpu_s']} s",
                          flush=True)
                    write_part(part_path, a, rates, start, load_before, cut, fits)
    write_part(part_path, a, rates, start, load_before, cut, fits)
    if set(rates) == set(RATES):
        merge(out)


def write_part(path: Path, a: argparse.Namespace, rates: tuple[float, ...], start: float, load_before: str,
               cut: list[str], fits: list[dict[str, Any]]) -> None:
    """What this process has done so far (rewritten after every fit, so a stopped sweep can be merged)."""
    part = {"updates": a.updates, "cap_minutes": a.cpu_minutes, "wall_minutes": a.wall_minutes,
            "cpu_minutes": (time.process_time() - start) / 60, "only": a.only,
            "load_before": load_before, "load_after": uptime_load(), "cut": cut, "rates": list(rates),
            "torch": torch.__version__, "fits": fits}
    path.write_text(json.dumps(part, indent=1) + "\n")


def uptime_load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average:")[-1].strip()


def merge(out: Path) -> None:
    """The parts in `out` as table_defaults_sweep.{json,md} (the parts are removed)."""
    paths = sorted(out.glob("table_defaults_sweep.part-*.json"))
    parts = [json.loads(p.read_text()) for p in paths]
    # (a fit run by two parts, e.g. by --only as well, is the same fit: it counts once)
    fits = list({(f["setting"], f["table"], f["rate"], f["seed"]): f for p in parts for f in p["fits"]}.values())
    rows = summarise(fits)
    base = [f for f in fits if f["setting"] == "defaults"]
    fewer = {k: statistics.mean(f["rmse_at"][k] for f in base) for k in base[0]["rmse_at"]} if base else {}
    updates, cap = parts[0]["updates"], sum(p["cap_minutes"] for p in parts)
    full = len(SEEDS) * len(RATES) * 2  # fits of a setting: seeds x rates x tables
    commands = [f"OMP_NUM_THREADS=1 python benchmarks/table_defaults_sweep.py --updates {updates} --cpu-minutes "
                f"{p['cap_minutes']:g} --wall-minutes {p['wall_minutes']:g} --rates {','.join(map(str, p['rates']))}"
                + (f" --only '{p['only']}'" if p.get("only") else "") for p in parts]
    meta = {"command": " & ".join(commands) + ("; python benchmarks/table_defaults_sweep.py --merge"
                                                 if len(parts) > 1 else ""),
            "updates": updates, "cap_minutes": cap, "cpu_minutes": sum(p["cpu_minutes"] for p in parts),
            "load_before": " / ".join(p["load_before"] for p in parts),
            "load_after": " / ".join(p["load_after"] for p in parts),
            "cut": [f"{name} ({done} of {full} fits)" if done else name for name, done in
                    ((label(s), sum(f["setting"] == label(s) for f in fits)) for s in settings_list())
                    if done < full], "fewer_updates": fewer, "torch": parts[0]["torch"]}
    (out / "table_defaults_sweep.json").write_text(json.dumps({"meta": meta, "summary": rows, "fits": fits},
                                                              indent=1) + "\n")
    write_md(out / "table_defaults_sweep.md", meta, rows)
    for p in paths:
        p.unlink()
    print((out / "table_defaults_sweep.md").read_text())


if __name__ == "__main__":
    main()
