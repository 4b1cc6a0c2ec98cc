"""The comparison's test_log_likelihood figure from run folders: the paired panel reads each run's
per-point .npy (saved beside its evaluation record), and `compare --seeds` folders (METHOD/seed-S) become
one row per method."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection

from deepem.report.compare import estimates_figure, run_row, write_comparison


def fake_run(folder: Path, seed: int, per_point: list[float], points_per_sec: float) -> Path:
    """A run folder holding what `run_row` reads: config, IW evaluations of test and train, metrics."""
    (folder / "evaluations").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"particles": 5, "epochs": 3, "seed": seed, "dataset": "digits"}))
    values = np.array(per_point)
    for split in ("test", "train"):
        record = {"log_likelihood": float(values.mean()), "stderr": float(values.std(ddof=1) / np.sqrt(values.size)),
                  "estimator": "IWAE bound, K=5000", "n_points": values.size, "subset": f"all {values.size}",
                  "kl_to_prior": 1.0, "active_units": 2}
        (folder / "evaluations" / f"iw-k5000-{split}-all-s{seed}.json").write_text(json.dumps(record))
        np.save(folder / "evaluations" / f"iw-k5000-{split}-all-s{seed}-per-point.npy", values)
    metrics = [{"kind": "train", "points_per_sec": points_per_sec}, {"kind": "valid", "epoch": 3, "valid_bound": -1.0,
                                                                    "estimator": "IWAE bound, K=100"}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return folder


def test_paired_panel_from_the_runs_per_point_files(tmp_path):
    rows = [run_row(fake_run(tmp_path / "vae", 0, [-10.0, -20.0, -30.0], 100.0), "vae"),
            run_row(fake_run(tmp_path / "iwae", 0, [-9.0, -19.0, -27.0], 50.0), "iwae")]
    assert rows[1]["group"] == "iwae" and rows[1]["seed"] == 0
    assert rows[1]["test_per_point"].endswith("iw-k5000-test-all-s0-per-point.npy")
    fig = estimates_figure(rows)
    try:
        left, right = fig.axes
        assert list(right.containers[0].lines[0].get_xdata()) == pytest.approx([5 / 3])  # (1 + 1 + 3) / 3
        assert "digits" in left.get_title()
    finally:
        plt.close(fig)
    write_comparison(tmp_path, rows, {r["method"]: [{"epoch": 3, "valid_bound": -1.0}] for r in rows})
    assert (tmp_path / "figures" / "test_log_likelihood.png").is_file()
    assert (tmp_path / "figures" / "validation.png").is_file()


def test_seed_folders_become_one_row_per_method(tmp_path):
    rows = []
    for method, shift, speed in (("vae", 0.0, 100.0), ("iwae", 1.0, 50.0)):
        for seed in (0, 1):
            run = fake_run(tmp_path / method / f"seed-{seed}", seed, [-10.0 + shift + seed, -20.0 + 2 * shift],
                           speed + seed)
            rows.append(run_row(run, f"{method}-s{seed}"))
    assert [r["group"] for r in rows] == ["vae", "vae", "iwae", "iwae"]
    fig = estimates_figure(rows)
    try:
        ll, diffs, speed = fig.axes
        assert [t.get_text() for t in ll.get_yticklabels()] == ["vae", "iwae"]
        (paired,) = [c.get_offsets() for c in diffs.collections if isinstance(c, PathCollection)]
        assert list(paired[:, 0]) == pytest.approx([1.5, 1.5])  # per seed: differences (1, 2)
        own = [list(c.get_offsets()[:, 0]) for c in speed.collections if isinstance(c, PathCollection)]
        assert own == [[100.0, 101.0], [50.0, 51.0]]
    finally:
        plt.close(fig)


def test_different_test_points_draw_no_paired_panel(tmp_path):
    rows = [run_row(fake_run(tmp_path / "vae", 0, [-10.0, -20.0, -30.0], 100.0), "vae"),
            run_row(fake_run(tmp_path / "iwae", 0, [-9.0, -19.0], 50.0), "iwae")]
    fig = estimates_figure(rows)
    try:
        assert len(fig.axes) == 1
    finally:
        plt.close(fig)
