"""test_log_likelihood.png beside the paired differences (issue 23, item 14): each method's mean ± s.e.
of its per-point differences to a reference on the same points, checked against a hand computation; with
seeds, one row per method, each seed a dot, the mean ± 1 s.d., and each seed's own throughput."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection

from deepem.report.estimates import comparison_figure, paired_difference, paired_differences, seeds_figure

# per-point log-likelihoods of three methods on the same four test points
PER_POINT = {"vae": [-10.0, -20.0, -30.0, -40.0], "iwae": [-9.0, -19.0, -28.0, -40.0],
             "rws": [-10.5, -20.5, -30.5, -40.5]}


def test_paired_difference_by_hand():
    # d = (1, 1, 2, 0): mean 1, s.d. sqrt(((0)^2 + 0 + 1 + 1) / 3) = sqrt(2/3), s.e. = sqrt(2/3) / 2
    mean, se = paired_difference(PER_POINT["iwae"], PER_POINT["vae"])
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert se == pytest.approx(math.sqrt(2 / 3) / 2, abs=1e-12)
    assert paired_difference(PER_POINT["rws"], PER_POINT["vae"]) == pytest.approx((-0.5, 0.0), abs=1e-12)
    assert paired_differences(PER_POINT)["vae"] == (0.0, 0.0)  # the first method is the reference


def test_paired_difference_needs_the_same_points():
    with pytest.raises(ValueError, match="same test points"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])


def test_the_figure_shows_estimates_and_paired_differences():
    values = {n: float(np.mean(v)) for n, v in PER_POINT.items()}
    errors = {n: float(np.std(v, ddof=1) / 2) for n, v in PER_POINT.items()}
    fig = comparison_figure(values, errors, per_point=PER_POINT, dataset="digits", estimator="IWAE bound, K=5000",
                            n_points=4, n_total=270)
    try:
        left, right = fig.axes
        assert [t.get_text() for t in left.get_yticklabels()] == list(PER_POINT)
        assert list(left.containers[0].lines[0].get_xdata()) == list(values.values())
        (paired,) = right.containers  # iwae and rws against vae; vae itself is not drawn
        assert list(paired.lines[0].get_xdata()) == pytest.approx([1.0, -0.5], abs=1e-12)
        assert list(paired.lines[0].get_ydata()) == [1, 2]  # on the rows of iwae and rws
        widths = [s[1][0] - s[0][0] for s in paired.lines[2][0].get_segments()]
        assert widths == pytest.approx([2 * math.sqrt(2 / 3) / 2, 0.0], abs=1e-12)
        assert "vae" in right.get_title() and "per-point differences" in right.get_xlabel()
        assert "digits" in left.get_title() and "K=5000" in left.get_title()
    finally:
        plt.close(fig)


def test_another_reference_and_no_paired_panel_without_per_point_values():
    values = {n: float(np.mean(v)) for n, v in PER_POINT.items()}
    fig = comparison_figure(values, {}, per_point=PER_POINT, reference="rws")
    try:
        assert list(fig.axes[1].containers[0].lines[0].get_xdata()) == pytest.approx([0.5, 1.5], abs=1e-12)
    finally:
        plt.close(fig)
    fig = comparison_figure(values, {})
    try:
        assert len(fig.axes) == 1
    finally:
        plt.close(fig)


def test_seeds_one_row_per_method_with_each_seed_a_dot():
    values = {"vae": {0: -20.0, 1: -21.0, 2: -22.0}, "iwae": {0: -19.0, 1: -19.5, 2: -20.0}}
    per_point = {"vae": {s: np.array([-20.0, -22.0]) + s for s in range(3)},
                 "iwae": {s: np.array([-19.0, -20.0]) + 2 * s for s in range(3)}}
    throughput = {"vae": {0: 900.0, 1: 1000.0, 2: 1100.0}, "iwae": {0: 500.0, 1: 600.0, 2: 700.0}}
    fig = seeds_figure(values, per_point=per_point, throughput=throughput, dataset="digits",
                       estimator="IWAE bound, K=5000")
    try:
        ll, diffs, speed = fig.axes
        assert [t.get_text() for t in ll.get_yticklabels()] == ["vae", "iwae"]
        dots = [c.get_offsets() for c in ll.collections if isinstance(c, PathCollection)]
        assert [list(d[:, 0]) for d in dots] == [[-20.0, -21.0, -22.0], [-19.0, -19.5, -20.0]]
        assert [list(d[:, 1]) for d in dots] == [[0, 0, 0], [1, 1, 1]]
        means = [c.lines[0].get_xdata()[0] for c in ll.containers]
        assert means == pytest.approx([-21.0, -19.5])
        spread = [s[1][0] - s[0][0] for c in ll.containers for s in c.lines[2][0].get_segments()]
        assert spread == pytest.approx([2 * 1.0, 2 * 0.5])  # ± 1 s.d. over seeds
        # seed s of iwae minus seed s of vae: per-point (1 + s, 2 + s), mean 1.5 + s
        (paired,) = [c.get_offsets() for c in diffs.collections if isinstance(c, PathCollection)]
        assert list(paired[:, 0]) == pytest.approx([1.5, 2.5, 3.5]) and list(paired[:, 1]) == [1, 1, 1]
        own = [list(c.get_offsets()[:, 0]) for c in speed.collections if isinstance(c, PathCollection)]
        assert own == [[900.0, 1000.0, 1100.0], [500.0, 600.0, 700.0]]  # each seed's own points/s
        assert "each seed's own" in speed.get_xlabel() and "3 seeds" in ll.get_xlabel()
    finally:
        plt.close(fig)
