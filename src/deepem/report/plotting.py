"""matplotlib, loaded when a figure is drawn: the CLI imports the report layer, and matplotlib's import
(a few hundred milliseconds) must not slow `deepem --help` (issue 23, item 12)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Line styles and markers cycled together, so overlapping curves stay distinguishable in grey print.
LINE_STYLES = ("-", "--", "-.", ":")
DPI = 120  # of every figure written
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG at `path` (folders made) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return path


def pixels(fig: Figure) -> np.ndarray:
    """The RGB pixels (H, W, 3), uint8, of `fig` as `save` writes it (its resolution and tight box, so no
    label is cut off); the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt = pyplot()
    plt.close(fig)
    buffer.seek(0)
    rgba = plt.imread(buffer, format="png")  # floats in [0, 1]
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def as_array(values: Any, dtype: Any = np.float64) -> np.ndarray:
    """An array from a NumPy array, a list or a tensor (on any device, with or without gradient),
    without importing torch here."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def line_style(i: int) -> dict[str, Any]:
    """The i-th curve's colour, line style and marker: no two of the first 8 curves share a style/marker
    pair, and colour changes too (for readers who see colour)."""
    return {"color": f"C{i % 10}", "linestyle": LINE_STYLES[i % len(LINE_STYLES)],
            "marker": MARKERS[i % len(MARKERS)]}
