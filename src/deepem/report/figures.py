"""Figures of runs: sample grids and learning curves (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


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


def bar_chart(values: dict[str, float], errors: dict[str, float], path: Path, ylabel: str) -> Path:
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(values) + 1), 4))
    names = list(values)
    ax.bar(names, [values[n] for n in names], yerr=[errors.get(n, 0.0) for n in names], capsize=4)
    lo = min(values.values())
    hi = max(values.values())
    pad = max(0.5, 0.15 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
