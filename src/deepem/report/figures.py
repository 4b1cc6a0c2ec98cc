"""Figures of runs: sample grids and learning curves (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def image_grid(images: torch.Tensor, image_shape: tuple[int, int], path: Path, columns: int = 8,
               title: str | None = None) -> Path:
    """Save images (N, H*W) with values in [0, 1] as one grid PNG."""
    n = images.shape[0]
    rows = (n + columns - 1) // columns
    h, w = image_shape
    grid = torch.full((rows * (h + 1) - 1, columns * (w + 1) - 1), 0.25)  # light grey separators
    for i in range(n):
        r, c = divmod(i, columns)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = images[i].reshape(h, w)
    fig, ax = plt.subplots(figsize=(columns * 0.6 + 0.4, rows * 0.6 + (0.6 if title else 0.2)))
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def learning_curves(curves: dict[str, Sequence[dict[str, Any]]], path: Path, key: str = "valid_bound",
                    ylabel: str = "validation bound (nats)") -> Path:
    """One line per run: `key` of its validation records against epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, records in curves.items():
        points = [(r["epoch"], r[key]) for r in records if key in r]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def estimate_figure(values: dict[str, float], errors: dict[str, float], value_label: str = "log-likelihood (nats)",
                    dataset: str | None = None, estimator: str | None = None, n_points: int | None = None,
                    n_total: int | None = None, split: str = "test") -> Figure:
    """Estimates as points with ± 1 standard-error bars, one row per method.

    Points, not bars: a bar's length from a truncated axis means nothing (log-likelihoods are negative and
    close together). Rows, not columns: long method names stay readable. The title says what was measured:
    the dataset, the estimator with its K (e.g. "IWAE bound, K=5000"), and how many points (of how many)."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)))
    ys = list(range(len(names)))
    xs = [values[n] for n in names]
    ses = [errors.get(n, 0.0) for n in names]
    ax.errorbar(xs, ys, xerr=ses, fmt="o", capsize=4, color="C0", ecolor="C0")
    for x, y, se in zip(xs, ys, ses, strict=True):
        ax.annotate(f"{x:.2f} ± {se:.2f}", (x, y), xytext=(0, 7), textcoords="offset points", ha="center",
                    fontsize=8)
    ax.set_yticks(ys, names)
    ax.set_ylim(len(names) - 0.4, -0.6)  # first method on top, room for the value labels
    ax.ticklabel_format(axis="x", useOffset=False)  # plain nats on the axis, no "+1.2e2" offset
    if n_points is None:
        points = f"{split} points"
    elif n_total is not None and n_points < n_total:
        points = f"a fixed random subset of {n_points} of the {n_total} {split} points"
    else:
        points = f"all {n_points} {split} points"
    ax.set_xlabel(f"{split} {value_label}" + (f", {estimator}" if estimator else "")
                  + f"\nerror bars: ± 1 standard error over {points}")
    title = f"{split.capitalize()} {value_label.split(' (')[0]}" + (f" on {dataset}" if dataset else "")
    if estimator or n_points is not None:
        title += "\n" + ", ".join(t for t in (estimator, points if n_points is not None else None) if t)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def estimate_chart(values: dict[str, float], errors: dict[str, float], path: Path, **labels: Any) -> Path:
    """Save `estimate_figure(values, errors, **labels)` as a PNG."""
    fig = estimate_figure(values, errors, **labels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def bar_chart(values: dict[str, float], errors: dict[str, float], path: Path, ylabel: str = "log-likelihood (nats)",
              dataset: str | None = None, estimator: str | None = None, n_points: int | None = None,
              n_total: int | None = None) -> Path:
    """The old name, kept for existing callers: draws `estimate_chart` (points with error bars, no bars)."""
    value_label = ylabel.removeprefix("test ")  # the old label said "test log-likelihood (nats)"
    return estimate_chart(values, errors, path, value_label=value_label, dataset=dataset, estimator=estimator,
                          n_points=n_points, n_total=n_total)
