"""The result files of benchmarks/uci_imputation.py: uci_imputation.json (every run's row, the settings
and the command) and uci_imputation.md (MSE tables beside the IWEM paper's Table 4, paired differences
over seeds on the same masks, training length and time, and the notes on what differs)."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

METHODS = ("miwae", "miss-iwem-woa", "miss-iwem")
BASELINE_NAMES = {"mean": "SimpleImputer (mean)", "knn": "KNNImputer (k = 5)",
                  "iterative-bayesridge": "IterativeImputer (BayesianRidge)",
                  "iterative-extratrees": "IterativeImputer (ExtraTrees, 10 trees)"}
DATASETS = {"banknote": "Bank", "breast-cancer": "Breast", "wine-red": "Red", "wine-white": "White"}
SETTINGS = {"whole": "whole table (the paper's setting: train on all rows, impute all rows' missing cells)",
            "split": "80 % split (train on the 80 % training rows, stop on the 10 % validation rows, impute the "
                     "training rows' missing cells)"}
#: IWEM paper, Table 4 (mean of 5 runs; no spread reported; no miss-IWEM-woa row)
PAPER = {"missIWAE": [0.598, 0.351, 0.537, 0.566], "miss-IWEM": [0.465, 0.346, 0.483, 0.479]}
#: (A, B): the table shows A − B per seed
PAIRS = [("miss-iwem", "miwae"), ("miss-iwem-woa", "miwae"), ("miss-iwem", "miss-iwem-woa")] + [
    (m, b) for m in METHODS for b in ("iterative-bayesridge", "iterative-extratrees", "knn")]
NOTES_FILE = Path(__file__).parent / "results" / "uci_imputation.notes.md"


def label(imputer: str) -> str:
    return f"{imputer} (deepem)" if imputer in METHODS else BASELINE_NAMES[imputer]


def select(rows: list[dict[str, Any]], setting: str, dataset: str, imputer: str) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["setting"] == setting and r["dataset"] == dataset
                   and r["imputer"] == imputer), key=lambda r: r["seed"])


def spread(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f} (n={len(values)})"


def mse_table(rows: list[dict[str, Any]], setting: str) -> list[str]:
    lines = ["| imputer | " + " | ".join(DATASETS.values()) + " |", "| --- |" + " --- |" * len(DATASETS)]
    for imputer in METHODS + tuple(BASELINE_NAMES):
        cells = [spread([r["mse"] for r in select(rows, setting, d, imputer)]) for d in DATASETS]
        lines.append(f"| {label(imputer)} | " + " | ".join(cells) + " |")
    for name, values in PAPER.items():
        lines.append(f"| {name} (IWEM paper, Table 4) | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return lines


def paired(rows: list[dict[str, Any]], setting: str, dataset: str, a: str, b: str) -> list[float]:
    """A − B on the seeds both have (the same masks: the seed draws them)."""
    mine = {r["seed"]: r["mse"] for r in select(rows, setting, dataset, a)}
    theirs = {r["seed"]: r["mse"] for r in select(rows, setting, dataset, b)}
    return [mine[s] - theirs[s] for s in sorted(mine.keys() & theirs.keys())]


def diff_cell(diffs: list[float]) -> str:
    if not diffs:
        return "–"
    lower = sum(d < 0 for d in diffs)
    sd = f" ± {statistics.stdev(diffs):.3f}" if len(diffs) > 1 else ""
    return f"{statistics.mean(diffs):+.3f}{sd} ({lower}/{len(diffs)} lower)"


def diff_table(rows: list[dict[str, Any]], setting: str) -> list[str]:
    lines = ["| A − B | " + " | ".join(DATASETS.values()) + " |", "| --- |" + " --- |" * len(DATASETS)]
    for a, b in PAIRS:
        lines.append(f"| {a} − {b} | " + " | ".join(diff_cell(paired(rows, setting, d, a, b)) for d in DATASETS)
                     + " |")
    return lines


def length_table(rows: list[dict[str, Any]], setting: str) -> list[str]:
    lines = ["| dataset | imputer | updates (mean, min–max) | cap | best at update (mean) | stopped by validation | "
             "train s | impute s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for d in DATASETS:
        for imputer in METHODS + tuple(BASELINE_NAMES):
            sel = select(rows, setting, d, imputer)
            if not sel:
                continue
            secs = " | ".join(f"{statistics.mean(r[k] for r in sel):.1f}" for k in ("train_s", "impute_s"))
            if imputer not in METHODS:
                lines.append(f"| {DATASETS[d]} | {label(imputer)} | – | – | – | – | {secs} |")
                continue
            steps = [r["updates"] for r in sel]
            lines.append(f"| {DATASETS[d]} | {imputer} | {statistics.mean(steps):.0f} ({min(steps)}–{max(steps)}) | "
                         f"{sel[0]['cap_updates']} | {statistics.mean(r['best_update'] for r in sel):.0f} | "
                         f"{sum(r['stopped_by_validation'] for r in sel)} of {len(sel)} | {secs} |")
    return lines


def paper_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per table: the paper's miss-IWEM − missIWAE beside deepem's miss-iwem − miwae (whole table)."""
    lines = ["| table | paper: miss-IWEM − missIWAE | deepem whole table: miss-iwem − miwae | "
             "deepem whole: miwae / paper missIWAE | deepem whole: miss-iwem / paper miss-IWEM |",
             "| --- | --- | --- | --- | --- |"]
    for i, (d, name) in enumerate(DATASETS.items()):
        paper_gap = PAPER["miss-IWEM"][i] - PAPER["missIWAE"][i]
        ours = paired(rows, "whole", d, "miss-iwem", "miwae")
        ratio = []
        for m, key in (("miwae", "missIWAE"), ("miss-iwem", "miss-IWEM")):
            v = [r["mse"] for r in select(rows, "whole", d, m)]
            ratio.append(f"{statistics.mean(v) / PAPER[key][i]:.2f}" if v else "–")
        lines.append(f"| {name} | {paper_gap:+.3f} | {diff_cell(ours)} | {ratio[0]} | {ratio[1]} |")
    return lines


def progress_line(rows: list[dict[str, Any]], a: argparse.Namespace) -> str:
    seeds = [s for s in a.seeds.split(",") if s]
    whole = [s for s in a.whole_seeds.split(",") if s]
    per = len(DATASETS) * (len(METHODS) + len(BASELINE_NAMES))
    planned = per * (len(seeds) + len(whole))
    done = {s: sorted({r["seed"] for r in rows if r["setting"] == s}) for s in SETTINGS}
    state = "complete" if len(rows) >= planned else "PARTIAL (the run was stopped before it finished)"
    return (f"Runs finished: {len(rows)} of {planned} planned: {state}. Seeds with results: whole table "
            f"{done['whole']} (planned {whole}), 80 % split {done['split']} (planned {seeds}).")


def write(rows: list[dict[str, Any]], a: argparse.Namespace, command: str) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(a).items() if k not in ("out", "runs", "report_only", "data_dir")}
    (out / "uci_imputation.json").write_text(json.dumps(
        {"command": command, "settings": settings, "paper_table_4": PAPER, "rows": rows}, indent=2) + "\n")
    text = [
        "# UCI imputation: the IWEM paper's Table 4, as the paper ran it (as far as the budget allowed)", "",
        "Command (from the repository root; resumes where it stopped):", "",
        f"    OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 5 {command} --data-dir DATA_DIR", "",
        progress_line(rows, a), "",
        f"Budget of every deepem run: at most {a.max_updates} updates (rounded up to whole epochs), batch "
        f"{a.batch_size}, Adam {a.lr:g}, K = {a.particles} in training; validation (observed-data IW bound, "
        f"K = {a.valid_particles}) about every {a.valid_steps} updates, stop after {a.patience} validations "
        f"without a new best, impute with the best validation's parameters; imputation by the self-normalised "
        f"IS mean with K = {a.impute_particles}. MSE over the missing cells on the standardised scale, "
        f"mean ± s.d. over seeds (each seed draws its own mask and initialisation; every imputer of a seed "
        f"uses the same mask).", ""]
    for setting, title in SETTINGS.items():
        text += [f"## MSE, {title}", ""] + mse_table(rows, setting) + [""]
    text += ["## deepem beside the paper (whole table)", ""] + paper_lines(rows) + [""]
    for setting in SETTINGS:
        text += [f"## Paired differences, {setting} setting (per seed, same masks; negative: A imputes better)",
                 ""] + diff_table(rows, setting) + [""]
    for setting in SETTINGS:
        text += [f"## Training length and time, {setting} setting (wall seconds on a shared 2-core CPU, one "
                 f"thread, nice 5)", ""] + length_table(rows, setting) + [""]
    if NOTES_FILE.is_file():
        text += [NOTES_FILE.read_text().rstrip(), ""]
    (out / "uci_imputation.md").write_text("\n".join(text))
