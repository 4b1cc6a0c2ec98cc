"""Figures of log-likelihood estimates: each method's estimate beside its paired difference to a
reference method on the same test points, and, over seeds, one row per method with every seed's value.

Points, not bars: a bar's length from a truncated axis means nothing (log-likelihoods are negative and
close together). Rows, not columns: long method names stay readable. The paired difference is the
comparison the test points support: two methods' ± s.e. intervals overlap even when one is better on
nearly every point, while the s.e. of the per-point differences removes the points' shared spread."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepem.report.plotting import as_array, pyplot, save

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def paired_difference(values: Any, reference: Any) -> tuple[float, float]:
    """(mean, standard error) of the per-point differences values - reference on the same points."""
    a, b = as_array(values).ravel(), as_array(reference).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired differences need the same test points; got {a.size} and {b.size} values")
    d = a - b
    se = float(d.std(ddof=1)) / math.sqrt(d.size) if d.size > 1 else float("nan")
    return float(d.mean()), se


def paired_differences(per_point: dict[str, Any], reference: str | None = None) -> dict[str, tuple[float, float]]:
    """name -> (mean, s.e.) of its per-point differences to `reference` (default: the first name)."""
    reference = reference if reference is not None else next(iter(per_point))
    return {name: paired_difference(v, per_point[reference]) for name, v in per_point.items()}


def _points_phrase(split: str, n_points: int | None, n_total: int | None) -> str:
    if n_points is None:
        return f"{split} points"
    if n_total is not None and n_points < n_total:
        return f"a fixed random subset of {n_points} of the {n_total} {split} points"
    return f"all {n_points} {split} points"


def _rows(ax: Axes, names: list[str], labels: bool = True) -> list[int]:
    """Method names as rows (set on the first of axes that share y; the others keep its ticks)."""
    ys = list(range(len(names)))
    if labels:
        ax.set_yticks(ys, names)
    ax.set_ylim(len(names) - 0.4, -0.6)  # first method on top, room for the value labels
    ax.ticklabel_format(axis="x", useOffset=False)  # plain nats on the axis, no "+1.2e2" offset
    ax.margins(x=0.12)  # room for the value labels at the ends
    ax.grid(axis="x", alpha=0.3)
    return ys


def _annotated_points(ax: Axes, xs: list[float], ses: list[float], ys: list[int], color: str = "C0") -> None:
    ax.errorbar(xs, ys, xerr=ses, fmt="o", capsize=4, color=color, ecolor=color)
    for x, y, se in zip(xs, ys, ses, strict=True):
        ax.annotate(f"{x:.2f} ± {se:.2f}", (x, y), xytext=(0, 7), textcoords="offset points", ha="center",
                    fontsize=8)


def _title(split: str, value_label: str, dataset: str | None, estimator: str | None, points: str | None) -> str:
    title = f"{split.capitalize()} {value_label.split(' (')[0]}" + (f" on {dataset}" if dataset else "")
    detail = ", ".join(t for t in (estimator, points) if t)
    return title + ("\n" + detail if detail else "")


def estimate_figure(values: dict[str, float], errors: dict[str, float], value_label: str = "log-likelihood (nats)",
                    dataset: str | None = None, estimator: str | None = None, n_points: int | None = None,
                    n_total: int | None = None, split: str = "test") -> Figure:
    """Estimates as points with ± 1 standard-error bars, one row per method. The title says what was
    measured: the dataset, the estimator with its K (e.g. "IWAE bound, K=5000"), how many points."""
    return comparison_figure(values, errors, None, None, value_label, dataset, estimator, n_points, n_total, split)


def comparison_figure(values: dict[str, float], errors: dict[str, float], per_point: dict[str, Any] | None = None,
                      reference: str | None = None, value_label: str = "log-likelihood (nats)",
                      dataset: str | None = None, estimator: str | None = None, n_points: int | None = None,
                      n_total: int | None = None, split: str = "test") -> Figure:
    """`estimate_figure`, and with `per_point` (name -> the method's per-point values on the same test
    points, in the same order) a second panel beside it: each method's mean ± s.e. of the per-point
    differences to `reference` (default: the first method; its own row is 0 and is left out)."""
    plt = pyplot()
    names = list(values)
    paired = per_point is not None and len(per_point) > 1
    width = (7, 0) if not paired else (6, 4.5)
    fig, axes = plt.subplots(1, 2 if paired else 1, figsize=(sum(width), 1.3 + 0.45 * len(names)),
                             squeeze=False, sharey=True, gridspec_kw={"width_ratios": width[:2] if paired else [1]})
    ax = axes[0][0]
    ys = _rows(ax, names)
    _annotated_points(ax, [values[n] for n in names], [errors.get(n, 0.0) for n in names], ys)
    points = _points_phrase(split, n_points, n_total)
    ax.set_xlabel(f"{split} {value_label}" + (f", {estimator}" if estimator else "")
                  + f"\nerror bars: ± 1 standard error over {points}")
    ax.set_title(_title(split, value_label, dataset, estimator, points if n_points is not None else None),
                 fontsize=10)
    if paired:
        reference = reference if reference is not None else names[0]
        diffs = paired_differences({n: per_point[n] for n in names if n in per_point}, reference)
        shown = [n for n in names if n in diffs and n != reference]
        right = axes[0][1]
        right.axvline(0.0, color="0.4", linewidth=1, linestyle="--")
        _annotated_points(right, [diffs[n][0] for n in shown], [diffs[n][1] for n in shown],
                          [names.index(n) for n in shown], color="C1")
        right.grid(axis="x", alpha=0.3)
        right.set_xlabel(f"paired difference to {reference} (nats)\nmean ± 1 s.e. of the per-point differences")
        right.set_title(f"minus {reference}, on the same points\n(> 0: better than {reference})", fontsize=10)
    fig.tight_layout()
    return fig


def _spread(xs: list[float]) -> float:
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def _seed_rows(ax: Axes, per_seed: dict[str, dict[int, float]], names: list[str], color: str,
               digits: int = 2) -> None:
    """Each seed's value as a small dot, the mean over seeds ± 1 s.d. as a larger marker with bars."""
    for y, name in enumerate(names):
        seeds = per_seed.get(name, {})
        if not seeds:
            continue
        xs = list(seeds.values())
        ax.scatter(xs, [y] * len(xs), s=14, color="0.35", zorder=3)
        mean, sd = float(np.mean(xs)), _spread(xs)
        ax.errorbar([mean], [y], xerr=[sd], fmt="D", markersize=7, capsize=4, color=color, mfc="none", zorder=4)
        ax.annotate(f"{mean:.{digits}f} ± {sd:.{digits}f}", (mean, y), xytext=(0, 8), textcoords="offset points",
                    ha="center", fontsize=8)


def seeds_figure(values: dict[str, dict[int, float]], per_point: dict[str, dict[int, Any]] | None = None,
                 reference: str | None = None, throughput: dict[str, dict[int, float]] | None = None,
                 value_label: str = "log-likelihood (nats)", dataset: str | None = None,
                 estimator: str | None = None, n_points: int | None = None, n_total: int | None = None,
                 split: str = "test") -> Figure:
    """With several seeds per method: one row per method, each seed's estimate as a dot and the mean ± 1
    s.d. over seeds; beside it (with `per_point`: method -> seed -> per-point values) each seed's paired
    difference to the same seed of `reference` (default: the first method), and (with `throughput`:
    method -> seed -> that seed's own training points/s) each seed's throughput."""
    plt = pyplot()
    names = list(values)
    reference = reference if reference is not None else names[0]
    diffs: dict[str, dict[int, float]] = {}
    if per_point:
        for name in names:
            same = {s: v for s, v in per_point.get(name, {}).items() if s in per_point.get(reference, {})}
            if name != reference and same:
                diffs[name] = {s: paired_difference(v, per_point[reference][s])[0] for s, v in same.items()}
    panels = ["values"] + (["diffs"] if diffs else []) + (["throughput"] if throughput else [])
    widths = {"values": 6, "diffs": 4.5, "throughput": 3.2}
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths[p] for p in panels), 2.4 + 0.6 * len(names)),
                             squeeze=False, sharey=True, gridspec_kw={"width_ratios": [widths[p] for p in panels]})
    counts = sorted({len(v) for v in values.values()})
    seeds_phrase = f"{'/'.join(map(str, counts))} seeds per method"
    for ax, panel in zip(axes[0], panels, strict=True):
        _rows(ax, names, labels=ax is axes[0][0])
        if panel == "values":
            _seed_rows(ax, values, names, "C0")
            points = _points_phrase(split, n_points, n_total)
            ax.set_xlabel(f"{split} {value_label}" + (f", {estimator}" if estimator else "")
                          + f"\ndots: each seed; ◇ and bars: mean ± 1 s.d. over {seeds_phrase}")
            ax.set_title(_title(split, value_label, dataset, estimator, points if n_points is not None else None),
                         fontsize=10)
        elif panel == "diffs":
            ax.axvline(0.0, color="0.4", linewidth=1, linestyle="--")
            _seed_rows(ax, diffs, names, "C1")
            ax.set_xlabel(f"paired difference to {reference} (nats)\neach seed against {reference}'s same seed")
            ax.set_title(f"minus {reference}, on the same points\n(> 0: better than {reference})", fontsize=10)
        else:
            _seed_rows(ax, throughput or {}, names, "C2", digits=0)
            ax.set_xlabel("training points/s\neach seed's own")
            ax.set_title("throughput per seed", fontsize=10)
    fig.tight_layout()
    return fig


def estimate_chart(values: dict[str, float], errors: dict[str, float], path: Path, **labels: Any) -> Path:
    """Save `comparison_figure(values, errors, **labels)` as a PNG (labels may hold per_point, reference)."""
    return save(comparison_figure(values, errors, **labels), path)


def seeds_chart(values: dict[str, dict[int, float]], path: Path, **labels: Any) -> Path:
    """Save `seeds_figure(values, **labels)` as a PNG."""
    return save(seeds_figure(values, **labels), path)


def bar_chart(values: dict[str, float], errors: dict[str, float], path: Path, ylabel: str = "log-likelihood (nats)",
              dataset: str | None = None, estimator: str | None = None, n_points: int | None = None,
              n_total: int | None = None) -> Path:
    """The old name, kept for existing callers: draws `estimate_chart` (points with error bars, no bars)."""
    value_label = ylabel.removeprefix("test ")  # the old label said "test log-likelihood (nats)"
    return estimate_chart(values, errors, path, value_label=value_label, dataset=dataset, estimator=estimator,
                          n_points=n_points, n_total=n_total)
