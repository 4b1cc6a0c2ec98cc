"""report.plotting.pixels: a figure's pixels as `save` writes them (what TensorBoard shows of a run)."""

from __future__ import annotations

import numpy as np

from deepem.report.figures import image_grid_figure
from deepem.report.plotting import pixels, pyplot, save


def test_pixels_are_those_of_the_saved_png(tmp_path):
    images = np.linspace(0, 1, 4 * 6).reshape(4, 6)
    shown = pixels(image_grid_figure(images, (2, 3), columns=2, title="a long title that must not be cut off"))
    path = save(image_grid_figure(images, (2, 3), columns=2, title="a long title that must not be cut off"),
                tmp_path / "grid.png")
    saved = (pyplot().imread(path)[..., :3] * 255).round().astype(np.uint8)
    assert shown.dtype == np.uint8 and shown.ndim == 3 and shown.shape[2] == 3
    assert np.array_equal(shown, saved)
