"""validation.png a reviewer accepts (issue 23, item 13): the title names the dataset, the bound and its
K; epochs are whole numbers; each curve has its own line style and marker; the legend is off the data."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from deepem.report.figures import learning_curves, learning_curves_figure


def records(offset: float, epochs: int = 7, estimator: str = "IWAE bound, K=100") -> list[dict]:
    return [{"kind": "valid", "epoch": e, "valid_bound": -30.0 + e + offset, "estimator": estimator}
            for e in range(1, epochs + 1)]


CURVES = {"vae": records(0.0), "iwae": records(0.01), "rws": records(0.5), "iwem-woo": records(0.02),
          "vimco": records(0.03)}


@pytest.fixture
def figure():
    fig = learning_curves_figure(CURVES, dataset="digits")
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def test_title_names_dataset_bound_and_k(figure):
    title = figure.axes[0].get_title()
    assert "digits" in title and "IWAE bound" in title and "K=100" in title
    assert "K=100" in figure.axes[0].get_ylabel()


def test_epoch_ticks_are_whole_numbers(figure):
    ticks = [t for t in figure.axes[0].get_xticks() if 1 <= t <= 7]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_every_curve_has_its_own_style_and_marker(figure):
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == list(CURVES)
    styles = {(line.get_linestyle(), line.get_marker()) for line in lines}
    assert len(styles) == len(lines)
    assert len({line.get_marker() for line in lines}) == len(lines)  # markers alone tell them apart



def test_long_overlapping_curves_put_their_markers_at_different_epochs():
    fig = learning_curves_figure({"vae": records(0.0, epochs=40), "iwae": records(0.01, epochs=40)})
    try:
        first, second = (line.get_markevery() for line in fig.axes[0].get_lines())
        assert first == (0, 3) and second == (1, 3)  # about a dozen markers each, staggered by one epoch
    finally:
        plt.close(fig)


def test_legend_lies_outside_the_data(figure):
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(CURVES)
    renderer = figure.canvas.get_renderer()
    box, axes_box = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.x0 >= axes_box.x1  # wholly right of the axes: it covers no curve


def test_runs_with_different_bounds_name_theirs_in_the_legend():
    fig = learning_curves_figure({"a": records(0, estimator="IWAE bound, K=5"),
                                  "b": records(0, estimator="IWAE bound, K=50")}, dataset="mnist")
    try:
        texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert texts == ["a (IWAE bound, K=5)", "b (IWAE bound, K=50)"]
        assert "mnist" in fig.axes[0].get_title()
    finally:
        plt.close(fig)


def test_an_explicit_bound_wins_and_the_png_is_written(tmp_path):
    path = learning_curves(CURVES, tmp_path / "figures" / "validation.png", dataset="digits",
                           bound="IWAE bound, K=7")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = learning_curves_figure(CURVES, bound="IWAE bound, K=7")
    try:
        assert "K=7" in fig.axes[0].get_title()
    finally:
        plt.close(fig)


def test_seeds_of_one_method_share_its_colour_and_differ_in_style():
    curves = {f"{m}-s{s}": records(0.1 * s) for m in ("vae", "iwae") for s in range(3)}
    fig = learning_curves_figure(curves, groups={label: label.split("-")[0] for label in curves})
    try:
        lines = fig.axes[0].get_lines()
        assert [line.get_color() for line in lines] == ["C0"] * 3 + ["C1"] * 3
        assert len({(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}) == 6
        assert len({line.get_marker() for line in lines[:3]}) == 3
    finally:
        plt.close(fig)
