"""The comparison figure says what it measured (issue 9, item 17): estimates as points with ± 1 s.e. error
bars, no bars from a truncated axis, method names as rows, dataset / estimator K / subset in the labels."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from deepem.report.figures import bar_chart, estimate_figure

VALUES = {"vae": -20.23, "iwae": -20.05, "iwem-woo-alphaevery12": -20.6}
ERRORS = {"vae": 0.22, "iwae": 0.21, "iwem-woo-alphaevery12": 0.25}


def test_estimates_are_points_with_error_bars_and_labelled():
    fig = estimate_figure(VALUES, ERRORS, dataset="digits", estimator="IWAE bound, K=5000", n_points=40,
                          n_total=270)
    ax = fig.axes[0]
    try:
        assert [t.get_text() for t in ax.get_yticklabels()] == list(VALUES)  # names as rows: no overlap
        assert not [p for p in ax.patches if isinstance(p, Rectangle)]  # no bars
        (container,) = ax.containers  # one errorbar container: the points and their ± 1 s.e. bars
        assert list(container.lines[0].get_xdata()) == list(VALUES.values())
        segments = container.lines[2][0].get_segments()
        assert [round(s[1][0] - s[0][0], 6) for s in segments] == [round(2 * e, 6) for e in ERRORS.values()]
        xlabel, title = ax.get_xlabel(), ax.get_title()
        assert "K=5000" in xlabel and "± 1 standard error" in xlabel and "40 of the 270 test points" in xlabel
        assert "digits" in title and "K=5000" in title and "40 of the 270" in title
    finally:
        plt.close(fig)


def test_old_call_site_still_writes_a_png(tmp_path):
    path = bar_chart(VALUES, ERRORS, tmp_path / "f" / "ll.png", ylabel="test log-likelihood (nats)")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
