"""The result files of benchmarks/imputation_benchmark.py: imputation_benchmark.json (the command, the
plan, the budgets, the machine's load and every row) and imputation_benchmark.md (per-imputer means,
paired differences deepem - best baseline with 95 % t-intervals over seeds, coverage, cost, verdicts)."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from scipy.stats import t as student_t

sys.path.insert(0, str(Path(__file__).parent))
from deepem.report.tables import markdown_table  # noqa: E402
from uci_report import spread  # noqa: E402

RESULTS_NAME = "imputation_benchmark"
#: metric key -> (title, True when higher is better)
METRICS = {"rmse_sd": ("imputation RMSE on the masked cells (sd units)", False),
           "error_rate": ("error rate on the masked binary cells", False),
           "downstream": ("downstream cross-validated random-forest score (accuracy or R²)", True)}
FULL_PLAN = {"tables": 7, "masks": 3, "rates": 2, "seeds": 5}


def paired_ci(diffs: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of paired differences and its two-sided t-interval (n - 1 degrees of freedom): mean ± t *
    sd / sqrt(n). With fewer than two differences the interval is None."""
    n = len(diffs)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def verdict(ci: dict[str, Any], higher_is_better: bool) -> str:
    """Which side the interval of deepem - baseline lies on."""
    if ci["low"] is None:
        return "one seed: no interval"
    if ci["high"] < 0:
        return "deepem worse" if higher_is_better else "deepem better"
    if ci["low"] > 0:
        return "deepem better" if higher_is_better else "deepem worse"
    return "no clear difference"


def _values(rows: list[dict[str, Any]], cell: tuple, imputer: str, metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in rows if (r["table"], r["mask"], r["rate"]) == cell
            and r["imputer"] == imputer and r.get(metric) is not None}


def cells(rows: list[dict[str, Any]]) -> list[tuple]:
    return sorted({(r["table"], r["mask"], r["rate"]) for r in rows})


def paired_rows(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per cell and deepem imputer: deepem - the baseline with the best mean (chosen on these very
    numbers, which favours the baseline), per seed on the same mask, with its 95 % t-interval."""
    higher = METRICS[metric][1]
    imputers = sorted({r["imputer"] for r in rows})
    out = []
    for cell in cells(rows):
        means = {i: statistics.fmean(v.values()) for i in imputers
                 if not i.startswith("deepem") and (v := _values(rows, cell, i, metric))}
        if not means:
            continue
        best = (max if higher else min)(means, key=means.get)
        theirs = _values(rows, cell, best, metric)
        for mine_name in (i for i in imputers if i.startswith("deepem")):
            mine = _values(rows, cell, mine_name, metric)
            seeds = sorted(mine.keys() & theirs.keys())
            if not seeds:
                continue
            ci = paired_ci([mine[s] - theirs[s] for s in seeds])
            out.append({"table": cell[0], "mask": cell[1], "rate": cell[2], "deepem": mine_name, "baseline": best,
                        "metric": metric, "diffs": [mine[s] - theirs[s] for s in seeds], **ci,
                        "verdict": verdict(ci, higher)})
    return out


def coverage_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell and deepem imputer: coverage of both samplers, and the paired difference of
    |coverage - 0.9| (negative: deepem's intervals are closer to their nominal level)."""
    out = []
    for cell in cells(rows):
        theirs = _values(rows, cell, "iterative-br", "coverage90")
        their_width = _values(rows, cell, "iterative-br", "width90_sd")
        for name in sorted({r["imputer"] for r in rows if r["imputer"].startswith("deepem")}):
            mine = _values(rows, cell, name, "coverage90")
            seeds = sorted(mine.keys() & theirs.keys())
            if not seeds:
                continue
            ci = paired_ci([abs(mine[s] - 0.9) - abs(theirs[s] - 0.9) for s in seeds])
            width = _values(rows, cell, name, "width90_sd")
            out.append({"table": cell[0], "mask": cell[1], "rate": cell[2], "deepem": name,
                        "deepem_coverage": statistics.fmean(mine[s] for s in seeds),
                        "iterative_coverage": statistics.fmean(theirs[s] for s in seeds),
                        "deepem_width": statistics.fmean(width[s] for s in seeds),
                        "iterative_width": statistics.fmean(their_width[s] for s in seeds), **ci,
                        "verdict": verdict(ci, False).replace("better", "closer to 90 %").replace(
                            "worse", "farther from 90 %")})
    return out


def cost_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per table and imputer: mean seconds of fit + transform, and their ratio to IterativeImputer
    (BayesianRidge), scikit-learn's default iterative imputer, and to the slowest baseline."""
    out = []
    for table in sorted({r["table"] for r in rows}):
        mine = [r for r in rows if r["table"] == table]
        seconds = {i: statistics.fmean(r["fit_transform_s"] for r in mine if r["imputer"] == i)
                   for i in sorted({r["imputer"] for r in mine})}
        slowest = max((s for i, s in seconds.items() if not i.startswith("deepem")), default=None)
        iterative = seconds.get("iterative-br")
        for imputer, s in seconds.items():
            out.append({"table": table, "imputer": imputer, "seconds": s,
                        "vs_iterative_br": f"{s / iterative:.1f}×" if iterative else "–",
                        "vs_slowest_baseline": f"{s / slowest:.1f}×" if slowest else "–"})
    return out


def _ci_text(r: dict[str, Any]) -> str:
    if r["low"] is None:
        return f"{r['mean']:+.3f} (n=1)"
    return f"{r['mean']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] (n={r['n']})"


def means_table(rows: list[dict[str, Any]], metric: str) -> str:
    imputers = sorted({r["imputer"] for r in rows if r.get(metric) is not None})
    table = []
    for cell in cells(rows):
        values = {i: list(_values(rows, cell, i, metric).values()) for i in imputers}
        if any(values.values()):
            table.append({"cell": f"{cell[0]} {cell[1]} {cell[2]:g}", **{i: spread(v) for i, v in values.items()}})
    return markdown_table(table, [("cell", "table, mask, rate")] + [(i, i) for i in imputers])


def summary_lines(paired: list[dict[str, Any]], coverage: list[dict[str, Any]],
                  costs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for metric, (title, _) in METRICS.items():
        mine = [r for r in paired if r["metric"] == metric]
        for name in sorted({r["deepem"] for r in mine}):
            rs = [r for r in mine if r["deepem"] == name]
            wins = [f"{r['table']} {r['mask']} {r['rate']:g}" for r in rs if r["verdict"] == "deepem better"]
            losses = [f"{r['table']} {r['mask']} {r['rate']:g}" for r in rs if r["verdict"] == "deepem worse"]
            lines.append(f"- {title}, {name} against the best baseline of each cell: better in {len(wins)} of "
                         f"{len(rs)} cells ({', '.join(wins) or 'none'}), worse in {len(losses)} "
                         f"({', '.join(losses) or 'none'}), no clear difference (or one seed) in the rest.")
    for name in sorted({r["deepem"] for r in coverage}):
        rs = [r for r in coverage if r["deepem"] == name]
        lines.append(f"- 90 % intervals, {name}: coverage {min(r['deepem_coverage'] for r in rs):.2f}–"
                     f"{max(r['deepem_coverage'] for r in rs):.2f} across cells against "
                     f"{min(r['iterative_coverage'] for r in rs):.2f}–{max(r['iterative_coverage'] for r in rs):.2f}"
                     f" for IterativeImputer(BayesianRidge, sample_posterior=True); closer to 90 % in "
                     f"{sum('closer' in r['verdict'] for r in rs)} of {len(rs)} cells, farther in "
                     f"{sum('farther' in r['verdict'] for r in rs)}.")
    for name in sorted({r["imputer"] for r in costs if r["imputer"].startswith("deepem")}):
        rs = [r for r in costs if r["imputer"] == name]
        ratios = [f"{', '.join(r['table'] + ' ' + r[key] for r in rs if r[key] != '–')} the time of {whom}"
                  for key, whom in (("vs_iterative_br", "IterativeImputer(BayesianRidge)"),
                                    ("vs_slowest_baseline", "the slowest baseline")) if any(r[key] != "–" for r in rs)]
        lines.append(f"- Cost, {name}: fit + transform {min(r['seconds'] for r in rs):.1f}–"
                     f"{max(r['seconds'] for r in rs):.1f} s per table; " + "; ".join(ratios)
                     + " (downstream refits and draws not counted).")
    return lines


def scope_line(record: dict[str, Any]) -> str:
    plan = record["plan"]
    full = all(len(plan[k]) >= n for k, n in FULL_PLAN.items())
    label = "FULL" if full else "REDUCED (a subset of the full plan: read it as indicative only)"
    return (f"Scope: {label}. Tables {', '.join(plan['tables'])}; masks {', '.join(plan['masks'])}; rates "
            f"{', '.join(f'{r:g}' for r in plan['rates'])}; seeds {', '.join(map(str, plan['seeds']))}; imputers "
            f"{', '.join(plan['imputers'])}.")


def write(out: Path, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Both result files, rewritten from the record and every row so far."""
    out.mkdir(parents=True, exist_ok=True)
    paired = [p for m in METRICS for p in paired_rows(rows, m)]
    coverage = coverage_rows(rows)
    costs = cost_rows(rows)
    (out / f"{RESULTS_NAME}.json").write_text(json.dumps(
        record | {"rows": rows, "paired": paired, "coverage": coverage, "cost": costs}, indent=2) + "\n")
    start, end = record["machine_start"], record["machine_end"]
    text = ["# Imputation benchmark: deepem's DeepImputer beside scikit-learn's imputers", "",
            scope_line(record), "", "Command (from the repository root):", "",
            f"    OMP_NUM_THREADS=1 PYTHONPATH=src {record['command']}", "",
            f"Machine: {start['cpus']} CPUs, load average (1, 5, 15 min) {start['load_average_1_5_15']} at the "
            f"start and {end['load_average_1_5_15']} at the end, torch threads {start['torch_threads']}"
            + (f", from {start['time_utc']} to {end['time_utc']} UTC" if "time_utc" in start else "")
            + ": a shared machine, so the seconds are indicative.", "",
            "## Verdict", "", *(summary_lines(paired, coverage, costs) or ["- No deepem imputer in this run."]), "",
            "A difference is called only when its 95 % t-interval over seeds (same seed = same mask) excludes 0; "
            "the best baseline of a cell is picked on these same numbers, which favours the baselines.", "",
            "Rate: the expected missing fraction of every masked column. Under mar the driver column (largest sd) "
            "is never masked, so a table of D columns loses rate × (D − 1) / D of its cells; each row of the JSON "
            "holds the realised fraction (missing_fraction).", "",
            "## Budgets (not tuned on these numbers)", ""]
    text += [f"- {k}: {v}" for k, v in record["budgets"].items()] + [""]
    if record["tables"]:
        text += ["## Tables", "", markdown_table([{"name": k, **v} for k, v in record["tables"].items()],
                                                 [("name", "table"), ("rows", "rows"), ("columns", "columns"),
                                                  ("task", "downstream task"), ("note", "note")])]
    if record["skipped"]:
        text += ["Skipped:", ""] + [f"- {k}: {v}" for k, v in record["skipped"].items()] + [""]
    for metric, (title, higher) in METRICS.items():
        mine = [r for r in paired if r["metric"] == metric]
        if not mine:
            continue
        better = "higher" if higher else "lower"
        text += [f"## {title[0].upper() + title[1:]}", "", f"Mean ± sd over seeds ({better} is better):", "",
                 means_table(rows, metric), "Paired difference deepem − best baseline, mean [95 % t-interval]:", "",
                 markdown_table([r | {"rate": f"{r['rate']:g}", "ci": _ci_text(r)} for r in mine],
                                [("table", "table"), ("mask", "mask"), ("rate", "rate"), ("deepem", "deepem"),
                                 ("baseline", "best baseline"), ("ci", "deepem − baseline"),
                                 ("verdict", "verdict")])]
    if coverage:
        text += ["## Coverage of 90 % intervals on the masked cells", "",
                 "Δ distance to 0.9: |coverage − 0.9| of deepem minus that of IterativeImputer(BayesianRidge, "
                 "sample_posterior=True), mean [95 % t-interval]; widths in sd units.", "",
                 markdown_table([r | {"rate": f"{r['rate']:g}", "ci": _ci_text(r)} for r in coverage],
                                [("table", "table"), ("mask", "mask"), ("rate", "rate"), ("deepem", "deepem"),
                                 ("deepem_coverage", "deepem coverage"), ("deepem_width", "deepem width"),
                                 ("iterative_coverage", "iterative coverage"),
                                 ("iterative_width", "iterative width"), ("ci", "Δ distance to 0.9"),
                                 ("verdict", "verdict")])]
    if costs:
        text += ["## Cost: seconds of fit + transform (mean over cells)", "",
                 markdown_table(costs, [("table", "table"), ("imputer", "imputer"), ("seconds", "seconds"),
                                        ("vs_iterative_br", "× iterative-br"),
                                        ("vs_slowest_baseline", "× slowest baseline")])]
    (out / f"{RESULTS_NAME}.md").write_text("\n".join(text))
