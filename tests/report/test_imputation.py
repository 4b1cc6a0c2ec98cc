"""Imputation figures a reviewer accepts (issue 23, item 15): labelled rows; a missing pixel is a colour
no separator or pixel value has; an imputed pixel is distinguishable from an observed one."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from deepem.report.imputation import (
    IMPUTED_INK_RGB,
    IMPUTED_PAPER_RGB,
    MISSING_RGB,
    SEPARATOR_RGB,
    imputation_chart,
    imputation_figure,
)

SHAPE = (2, 3)
TRUTH = np.array([[0.0, 1.0, 0.5, 0.25, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.5, 0.5]])
MASK = np.array([[True, False, True, False, True, True], [False, True, True, True, True, False]])
IMPUTED = np.where(MASK, TRUTH, np.array([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.3]]))


@pytest.fixture
def grid():
    fig = imputation_figure(TRUTH, MASK, IMPUTED, SHAPE, title="iwae on digits, step 567")
    ax = fig.axes[0]
    yield fig, ax, np.asarray(ax.images[0].get_array())
    plt.close(fig)


def cell(image: np.ndarray, row: int, col: int) -> np.ndarray:
    h, w = SHAPE
    return image[row * (h + 1):row * (h + 1) + h, col * (w + 1):col * (w + 1) + w].reshape(h * w, 3)


def test_rows_are_labelled(grid):
    _, ax, _ = grid
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert [label.split("\n")[0] for label in labels] == ["observed", "truth", "imputed"]
    assert "orange" in labels[0]


def test_missing_pixels_are_orange_and_unlike_separators(grid):
    _, _, image = grid
    assert image.shape == (3 * 3 - 1, 2 * 4 - 1, 3)
    for col in range(2):
        observed = cell(image, 0, col)
        assert np.allclose(observed[~MASK[col]], MISSING_RGB)
        grey = 1.0 - TRUTH[col][MASK[col]]
        assert np.allclose(observed[MASK[col]], np.stack([grey] * 3, axis=1))
    separators = np.concatenate([image[2, :, :], image[:, 3, :]])
    assert np.allclose(separators, SEPARATOR_RGB)
    assert not np.allclose(MISSING_RGB, SEPARATOR_RGB)


def test_imputed_pixels_are_blue_observed_pixels_grey(grid):
    _, _, image = grid
    for col in range(2):
        imputed = cell(image, 2, col)
        missing, seen = imputed[~MASK[col]], imputed[MASK[col]]
        assert np.all(missing[:, 2] - missing[:, 0] > 0.1)  # blue, even for an imputed 0 or 1
        assert np.allclose(seen[:, 0], seen[:, 1]) and np.allclose(seen[:, 1], seen[:, 2])  # grey
        v = IMPUTED[col][~MASK[col]][:, None]
        assert np.allclose(missing, (1 - v) * np.array(IMPUTED_PAPER_RGB) + v * np.array(IMPUTED_INK_RGB))
    assert np.allclose(cell(image, 1, 0)[:, 0], 1.0 - TRUTH[0])  # the truth row: all pixels, grey


def test_cells_are_framed_and_the_key_names_both_colours(grid):
    _, ax, _ = grid
    assert len([p for p in ax.patches if isinstance(p, Rectangle)]) == 3 * 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["missing (not observed)", "imputed value"]


def test_several_imputations_get_a_row_each(tmp_path):
    fig = imputation_figure(TRUTH, MASK, {"model": IMPUTED, "column mean": np.full_like(TRUTH, 0.5)}, SHAPE)
    try:
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert labels[1:] == ["truth", "model", "column mean"]
    finally:
        plt.close(fig)
    path = imputation_chart(TRUTH, MASK, IMPUTED, SHAPE, tmp_path / "imputation-train.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensors_are_drawn_as_their_values():
    import torch

    truth = torch.tensor(TRUTH, requires_grad=True)  # a model's output may still carry gradient
    fig = imputation_figure(truth, torch.tensor(MASK), torch.tensor(IMPUTED), SHAPE)
    reference = imputation_figure(TRUTH, MASK, IMPUTED, SHAPE)
    try:
        assert np.array_equal(fig.axes[0].images[0].get_array(), reference.axes[0].images[0].get_array())
    finally:
        plt.close(fig)
        plt.close(reference)


def test_without_the_missing_values_there_is_no_truth_row():
    """Data that came incomplete (NaN where missing) have no truth to show; the observed pixels still are."""
    unknown = np.where(MASK, TRUTH, np.nan)
    fig = imputation_figure(unknown, MASK, IMPUTED, SHAPE)
    ax = fig.axes[0]
    labels = [t.get_text().split("\n")[0] for t in ax.get_yticklabels()]
    image = np.asarray(ax.images[0].get_array())
    plt.close(fig)
    assert labels == ["observed", "imputed"]
    assert np.allclose(cell(image, 0, 0)[MASK[0]], np.stack([1.0 - TRUTH[0][MASK[0]]] * 3, axis=1))
