"""Figures of runs: sample grids and learning curves (matplotlib, loaded when drawing; no display needed).
The estimate figures live in report/estimates.py and imputation figures in report/imputation.py; their
names are re-exported here for existing callers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepem.report.estimates import bar_chart, comparison_figure, estimate_chart, estimate_figure, seeds_figure
from deepem.report.imputation import imputation_chart, imputation_figure
from deepem.report.plotting import as_array, line_style, pyplot, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["bar_chart", "comparison_figure", "estimate_chart", "estimate_figure", "image_grid", "image_grid_figure",
           "imputation_chart", "imputation_figure", "learning_curves", "learning_curves_figure", "seeds_figure"]


def image_grid_figure(images: Any, image_shape: tuple[int, int], columns: int = 8, title: str | None = None
                      ) -> Figure:
    """Images (N, H*W) with values in [0, 1] (an array or a CPU tensor) as one grid, `columns` a row."""
    images = as_array(images)
    n = images.shape[0]
    rows = (n + columns - 1) // columns
    h, w = image_shape
    grid = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), 0.25)  # light grey separators
    for i in range(n):
        r, c = divmod(i, columns)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = images[i].reshape(h, w)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(columns * 0.6 + 0.4, rows * 0.6 + (0.6 if title else 0.2)))
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def image_grid(images: Any, image_shape: tuple[int, int], path: Path, columns: int = 8,
               title: str | None = None) -> Path:
    """Save `image_grid_figure(...)` as one grid PNG at `path`."""
    return save(image_grid_figure(images, image_shape, columns, title), path)


def _bound_names(curves: dict[str, Sequence[dict[str, Any]]], key: str) -> dict[str, str]:
    """Each curve's bound as its records name it (e.g. "IWAE bound, K=100"; the trainer writes it as
    "estimator" in every validation record)."""
    names = {}
    for label, records in curves.items():
        found = {r["estimator"] for r in records if key in r and r.get("estimator")}
        if found:
            names[label] = ", ".join(sorted(found))
    return names


def learning_curves_figure(curves: dict[str, Sequence[dict[str, Any]]], key: str = "valid_bound",
                           ylabel: str | None = None, dataset: str | None = None,
                           bound: str | None = None, groups: dict[str, str] | None = None) -> Figure:
    """One line per run: `key` of its validation records against epoch.

    curves: label -> the run's validation records ({"epoch", key, "estimator"}, as in metrics.jsonl).
    dataset: named in the title. bound: the bound and its K (e.g. "IWAE bound, K=100"); None: taken from
    the records' "estimator" (when runs differ, each legend entry names its own). groups: label -> its
    method, for seeds of one method: a method keeps one colour, its seeds differ in line style and marker.
    Each curve has its own line style and marker (placed at staggered epochs, so overlapping curves
    stay visible), the epoch axis has whole-number ticks, and the legend sits outside the data."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    names = _bound_names(curves, key)
    shared = bound or (next(iter(names.values())) if len(set(names.values())) == 1 else None)
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = [(label, [(r["epoch"], r[key]) for r in records if key in r]) for label, records in curves.items()]
    drawn = [(label, points) for label, points in drawn if points]
    order = list(dict.fromkeys((groups or {}).get(label, label) for label, _ in drawn))
    seen: dict[str, int] = {}
    for i, (label, points) in enumerate(drawn):
        xs, ys = zip(*points, strict=True)
        group = (groups or {}).get(label, label)
        member, seen[group] = seen.get(group, 0), seen.get(group, 0) + 1
        style = line_style(i) if groups is None else {**line_style(member), "color": f"C{order.index(group) % 10}"}
        every = max(1, len(xs) // 12)  # about a dozen markers per curve, shifted per curve
        own = "" if shared or label not in names else f" ({names[label]})"
        ax.plot(xs, ys, markersize=5, markevery=(i % every, every),
                fillstyle="none", linewidth=1.4, label=label + own, **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or f"validation {shared or 'bound'} (nats)")
    title = f"Validation {shared or 'bound'}" + (f" on {dataset}" if dataset else "")
    ax.set_title(title + "\n(higher is better)", fontsize=10)
    ax.grid(alpha=0.3)
    if drawn:  # outside the axes, right of the data: never on top of a curve
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, frameon=False)
    return fig


def learning_curves(curves: dict[str, Sequence[dict[str, Any]]], path: Path, key: str = "valid_bound",
                    ylabel: str | None = None, dataset: str | None = None, bound: str | None = None,
                    groups: dict[str, str] | None = None) -> Path:
    """Save `learning_curves_figure(...)` as a PNG at `path`."""
    return save(learning_curves_figure(curves, key, ylabel, dataset, bound, groups), path)
