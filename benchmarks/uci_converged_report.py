"""The result files of benchmarks/uci_converged.py: uci_imputation-converged.{json,md} (every run's row,
MSE beside the IWEM paper's Table 4, paired differences, updates used and whether the cap was hit) and
uci_imputation-curve.{json,md,png} (the learning curve)."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from uci_report import BASELINE_NAMES, DATASETS, PAPER, diff_cell, label, spread

METHODS = ("miwae", "miss-iwem-woa", "miss-iwem")
PAIRS = [("miss-iwem", "miwae"), ("miss-iwem-woa", "miwae"), ("miss-iwem", "miss-iwem-woa")] + [
    (m, b) for m in METHODS for b in ("iterative-bayesridge", "iterative-extratrees", "knn")]
RESULTS = Path(__file__).parent / "results"
NOTES_FILE = RESULTS / "uci_imputation-converged.notes.md"
CURVE_NOTES_FILE = RESULTS / "uci_imputation-curve.notes.md"


def select(rows: list[dict[str, Any]], dataset: str, imputer: str) -> list[dict[str, Any]]:
    """The rows of one imputer on one table, on the seeds where all three methods finished (so every
    imputer of a table is compared on the same masks)."""
    full = set.intersection(*({r["seed"] for r in rows if r["dataset"] == dataset and r["imputer"] == m}
                              for m in METHODS))
    return sorted((r for r in rows if r["dataset"] == dataset and r["imputer"] == imputer and r["seed"] in full),
                  key=lambda r: r["seed"])


def paired(rows: list[dict[str, Any]], dataset: str, a: str, b: str) -> list[float]:
    """A − B on the seeds both have (the same masks: the seed draws them)."""
    mine = {r["seed"]: r["mse"] for r in select(rows, dataset, a)}
    theirs = {r["seed"]: r["mse"] for r in select(rows, dataset, b)}
    return [mine[s] - theirs[s] for s in sorted(mine.keys() & theirs.keys())]


def mse_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| imputer | " + " | ".join(DATASETS.values()) + " |", "| --- |" + " --- |" * len(DATASETS)]
    for imputer in METHODS + tuple(BASELINE_NAMES):
        cells = [spread([r["mse"] for r in select(rows, d, imputer)]) for d in DATASETS]
        lines.append(f"| {label(imputer)} | " + " | ".join(cells) + " |")
    for name, values in PAPER.items():
        lines.append(f"| {name} (IWEM paper, Table 4) | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return lines


def paper_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| table | paper: miss-IWEM − missIWAE | deepem: miss-iwem − miwae | deepem miwae / paper missIWAE | "
             "deepem miss-iwem / paper miss-IWEM |", "| --- | --- | --- | --- | --- |"]
    for i, (d, name) in enumerate(DATASETS.items()):
        ratio = []
        for m, key in (("miwae", "missIWAE"), ("miss-iwem", "miss-IWEM")):
            v = [r["mse"] for r in select(rows, d, m)]
            ratio.append(f"{statistics.mean(v) / PAPER[key][i]:.2f}" if v else "–")
        gap = PAPER["miss-IWEM"][i] - PAPER["missIWAE"][i]
        lines.append(f"| {name} | {gap:+.3f} | {diff_cell(paired(rows, d, 'miss-iwem', 'miwae'))} | {ratio[0]} | "
                     f"{ratio[1]} |")
    return lines


def diff_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| A − B | " + " | ".join(DATASETS.values()) + " |", "| --- |" + " --- |" * len(DATASETS)]
    for a, b in PAIRS:
        lines.append(f"| {a} − {b} | " + " | ".join(diff_cell(paired(rows, d, a, b)) for d in DATASETS) + " |")
    return lines


def length_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| table | method | updates used (per seed) | best check at update (per seed) | stopped by the rule | "
             "hit the cap | α at best (miss-iwem) | held-out RMSE at best | train CPU s (mean) | impute CPU s (mean) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for d in DATASETS:
        for m in METHODS:
            sel = select(rows, d, m)
            if not sel:
                continue
            alpha = ", ".join(f"{r['alpha_at_best']:.2f}" for r in sel) if m == "miss-iwem" else "–"
            lines.append(
                f"| {DATASETS[d]} | {m} | {', '.join(str(r['updates']) for r in sel)} | "
                f"{', '.join(str(r['best_update']) for r in sel)} | {sum(r['stopped_by_rule'] for r in sel)} of "
                f"{len(sel)} | {sum(r['hit_cap'] for r in sel)} of {len(sel)} | {alpha} | "
                f"{spread([r['best_held_out_rmse'] for r in sel])} | "
                f"{statistics.mean(r['train_cpu_s'] for r in sel):.1f} | "
                f"{statistics.mean(r['impute_cpu_s'] for r in sel):.1f} |")
    return lines


def progress_line(rows: list[dict[str, Any]], a: argparse.Namespace) -> str:
    planned_seeds = [int(s) for s in a.seeds.split(",")]
    per = len(METHODS) + len(BASELINE_NAMES)
    planned = per * len(planned_seeds) * len(a.datasets.split(","))
    have = {DATASETS[d]: sorted({r["seed"] for r in rows if r["dataset"] == d and r["imputer"] == "miss-iwem"})
            for d in DATASETS}
    state = "complete" if len(rows) >= planned else "PARTIAL (stopped before it finished: see the cuts below)"
    return (f"Runs finished: {len(rows)} of {planned} planned ({planned_seeds} × 4 tables × 3 methods + 4 "
            f"baselines): {state}. Seeds with all three methods done, per table: {have}.")


def write_table(rows: list[dict[str, Any]], a: argparse.Namespace, command: str, env: dict[str, Any]) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(a).items() if k not in ("out", "runs", "data_dir", "what") and
                not k.startswith("curve")}
    (out / "uci_imputation-converged.json").write_text(json.dumps(
        {"command": command, "settings": settings, "environment": env, "paper_table_4": PAPER, "rows": rows},
        indent=1) + "\n")
    models = [r for r in rows if r["imputer"] in METHODS]
    # the baselines of a seed whose methods were cut are in the JSON only
    cpu = sum(r.get("train_cpu_s", r["train_s"]) + r.get("impute_cpu_s", r["impute_s"]) for r in rows)
    text = [
        "# UCI imputation, the IWEM paper's Table 4 protocol carried to convergence (whole table, MCAR 50 %)", "",
        "Command (from the repository root; resumes where it stopped):", "",
        f"    OMP_NUM_THREADS=1 PYTHONPATH=src {command} --data-dir DATA_DIR", "",
        progress_line(rows, a), "",
        f"Every deepem run: the library's held-out-cells stopping rule (`deepem train --validation-fraction "
        f"{a.validation_fraction:g} --valid-every-steps {a.valid_steps} --patience {a.patience} --max-iter "
        f"{a.max_updates}`): {a.validation_fraction:.0%} of the observed cells hidden from training, their "
        f"imputation RMSE (K = {a.valid_particles}) checked every {a.valid_steps} updates, stop after "
        f"{a.patience} checks without a new best or at the cap of {a.max_updates} updates, keep the best check's "
        f"parameters. Batch {a.batch_size}, Adam {a.lr:g}, K = J = {a.particles}; imputation of every missing "
        f"cell by the self-normalised IS mean with K = {a.impute_particles}, conditioned on every observed cell. "
        f"MSE over the missing cells on the standardised scale, mean ± s.d. over seeds (a seed draws the mask "
        f"and the initialisation; every imputer of a seed uses the same mask).", "",
        f"Compute so far: {cpu / 60:.1f} CPU-minutes in the runs' own training and imputation (one thread); "
        f"{sum(r['hit_cap'] for r in models)} of {len(models)} deepem runs hit the cap. torch {env['torch']}.", "",
        "## MSE of the missing cells, whole table", ""] + mse_table(rows) + [
        "", "## deepem beside the paper", ""] + paper_table(rows) + [
        "", "## Paired differences (per seed, same masks; negative: A imputes better)", ""] + diff_table(rows) + [
        "", "## Updates used, and whether the rule or the cap stopped the run", ""] + length_table(rows) + [""]
    if NOTES_FILE.is_file():
        text += [NOTES_FILE.read_text().rstrip(), ""]
    (out / "uci_imputation-converged.md").write_text("\n".join(text))


def write_curve(curves: dict[str, Any], a: argparse.Namespace, command: str, env: dict[str, Any]) -> None:
    out = Path(a.out)
    (out / "uci_imputation-curve.json").write_text(json.dumps(
        {"command": command, "environment": env, "dataset": a.curve_dataset, "seed": a.curve_seed,
         "curves": curves}, indent=1) + "\n")
    name = DATASETS[a.curve_dataset]
    every = max(1, round(1000 / a.valid_steps))  # the md shows every 1000 updates; the JSON has every check
    text = [f"# Learning curve: {name}, seed {a.curve_seed}, whole table, MCAR 50 %, no stopping", "",
            "Command (from the repository root):", "",
            f"    OMP_NUM_THREADS=1 PYTHONPATH=src {command} --data-dir DATA_DIR", "",
            f"Every {a.valid_steps} updates: the stopping rule's criterion (held-out RMSE of "
            f"{a.validation_fraction:.0%} of the observed cells, K = {a.valid_particles}) and the MSE of the missing "
            f"cells (K = {a.curve_impute_particles}; the table's final imputations use K = {a.impute_particles}). "
            f"All checks are in uci_imputation-curve.json; below, every {every * a.valid_steps} updates. "
            f"torch {env['torch']}.", ""]
    for method, c in curves.items():
        text.append(f"- {method}: {c['updates']} updates ({c['updates_per_epoch']} per epoch), {c['cpu_s']:.0f} "
                    f"CPU s; lowest held-out RMSE at update {best_point(c)['step']} (missing-cell MSE there "
                    f"{best_point(c)['mse']:.3f}); lowest missing-cell MSE {min(p['mse'] for p in c['points']):.3f} "
                    f"at update {min(c['points'], key=lambda p: p['mse'])['step']}.")
    steps = sorted({p["step"] for c in curves.values() for p in c["points"]})
    shown = [s for i, s in enumerate(steps) if (i + 1) % every == 0 or i == 0 or s == steps[-1]]
    text += ["", "| update | " + " | ".join(f"{m}: MSE / held-out RMSE" + (" / α" if m == "miss-iwem" else "")
                                             for m in curves) + " |", "| --- |" + " --- |" * len(curves)]
    for s in shown:
        cells = []
        for m, c in curves.items():
            p = next((p for p in c["points"] if p["step"] == s), None)
            cells.append("–" if p is None else f"{p['mse']:.3f} / {p['held_out_rmse']:.3f}"
                         + (f" / {p['alpha']:.2f}" if m == "miss-iwem" else ""))
        text.append(f"| {s} | " + " | ".join(cells) + " |")
    if plot_curve(curves, out / "uci_imputation-curve.png", name, a):
        text += ["", "![learning curve](uci_imputation-curve.png)"]
    if CURVE_NOTES_FILE.is_file():
        text += ["", CURVE_NOTES_FILE.read_text().rstrip()]
    (out / "uci_imputation-curve.md").write_text("\n".join(text) + "\n")


def best_point(curve: dict[str, Any]) -> dict[str, Any]:
    return min(curve["points"], key=lambda p: p["held_out_rmse"])


def plot_curve(curves: dict[str, Any], path: Path, name: str, a: argparse.Namespace) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    for method, c in curves.items():
        steps = [p["step"] for p in c["points"]]
        axes[0].plot(steps, [p["mse"] for p in c["points"]], label=method, lw=1)
        axes[1].plot(steps, [p["held_out_rmse"] for p in c["points"]], label=method, lw=1)
    axes[0].set_title(f"{name}: MSE of the missing cells")
    axes[1].set_title(f"held-out RMSE ({a.validation_fraction:.0%} of observed cells)")
    for ax in axes:
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
