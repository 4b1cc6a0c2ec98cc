"""The imputation figure (IWEM paper, Figure 5): rows of images (observed, truth, each imputation), one
column per data point, each row labelled.

Colours carry the meaning, not shades of grey: a missing pixel in the observed row is orange, never a
grey that could be read as a cell separator or a pixel value; an imputed pixel is drawn on a white-to-
blue ramp, so it stays distinguishable from the observed pixels (white-to-black) around it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepem.report.plotting import as_array, pyplot, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MISSING_RGB = (1.0, 0.55, 0.0)  # orange: a pixel that was not observed
SEPARATOR_RGB = (1.0, 1.0, 1.0)  # white gaps between cells; each cell also gets a dark frame
FRAME_RGB = (0.35, 0.35, 0.35)
IMPUTED_PAPER_RGB = (0.84, 0.90, 1.0)  # an imputed 0: pale blue, never the white of an observed 0
IMPUTED_INK_RGB = (0.05, 0.2, 0.8)  # an imputed 1: dark blue, never the black of an observed 1


def _ink(values: np.ndarray, ink: tuple[float, float, float],
         paper: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Values in [0, 1] as RGB on a `paper`-to-`ink` ramp (1 = full ink, as the grey samples draw 1 black)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    return (1.0 - v) * np.asarray(paper) + v * np.asarray(ink)


def imputation_rows(truth: Any, mask: Any, imputed: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """[(label, RGB images (N, H*W, 3))]: "observed" (missing orange), "truth", then each imputation
    (its values at missing pixels in blue, the observed pixels in grey as given). Where the missing
    values are not known (NaN in `truth`, e.g. a dataset that came incomplete), there is no truth row."""
    truth = as_array(truth)
    observed = as_array(mask, dtype=bool)
    grey = _ink(np.nan_to_num(truth), (0.0, 0.0, 0.0))
    shown = np.where(observed[..., None], grey, np.asarray(MISSING_RGB))
    rows = [("observed\n(missing: orange)", shown)] + ([("truth", grey)] if np.isfinite(truth).all() else [])
    for label, values in imputed.items():
        values = as_array(values)
        rows.append((label, np.where(observed[..., None], grey, _ink(values, IMPUTED_INK_RGB, IMPUTED_PAPER_RGB))))
    return rows


def imputation_figure(truth: Any, mask: Any, imputed: Any, image_shape: tuple[int, int],
                      title: str | None = None) -> Figure:
    """truth (N, H*W) in [0, 1]; mask (N, H*W), True where observed; imputed: the completed images (N, H*W),
    or label -> completed images for several rows (e.g. {"model": ..., "column mean": ...})."""
    rows = imputation_rows(truth, mask, imputed if isinstance(imputed, dict) else {"imputed\n(blue)": imputed})
    h, w = image_shape
    n = rows[0][1].shape[0]
    grid = np.empty((len(rows) * (h + 1) - 1, n * (w + 1) - 1, 3))
    grid[:] = SEPARATOR_RGB
    for r, (_, images) in enumerate(rows):
        for c in range(n):
            grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = images[c].reshape(h, w, 3)
    plt = pyplot()
    from matplotlib.patches import Patch, Rectangle

    fig, ax = plt.subplots(figsize=(n * 0.6 + 1.6, len(rows) * 0.6 + (1.2 if title else 0.8)))
    ax.imshow(grid, interpolation="nearest")
    for r in range(len(rows)):  # a frame per cell: the gaps read as gaps, not as white pixels
        for c in range(n):
            ax.add_patch(Rectangle((c * (w + 1) - 0.5, r * (h + 1) - 0.5), w, h, fill=False, edgecolor=FRAME_RGB,
                                   linewidth=0.6))
    ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=8)
    ax.set_xticks([])
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    handles = [Patch(facecolor=MISSING_RGB, label="missing (not observed)"),
               Patch(facecolor=_ink(np.array(0.6), IMPUTED_INK_RGB, IMPUTED_PAPER_RGB), label="imputed value")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=7, frameon=False)
    return fig


def imputation_chart(truth: Any, mask: Any, imputed: Any, image_shape: tuple[int, int], path: Path,
                     title: str | None = None) -> Path:
    """Save `imputation_figure(...)` as a PNG at `path`."""
    return save(imputation_figure(truth, mask, imputed, image_shape, title), path)
