"""A file of one's own through the command line: `deepem train --dataset FILE`, `deepem impute RUN --input
--output` and `deepem score RUN --input --output`. The round trip keeps every observed cell's text, fills
every missing one and keeps the header; scores are `deepem evaluate`'s per-point values (on the file's
own scale); bad input is one line, exit 2, nothing written; Ctrl-C stops at once with exit 130."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deepem.cli import main
from deepem.evaluation.own_rows import score_rows
from deepem.workflows.loading import load_trained_run

TRAIN = ["--threads", "1", "train", "-m", "miwae", "--latent-dim", "2", "--hidden", "16", "--epochs", "2",
         "--batch-size", "20", "--valid-particles", "5", "--quiet"]


def write_csv(path: Path, n: int = 120, seed: int = 0) -> Path:
    """A 4-column CSV with a header, about a third of its rows with an empty cell and some NA cells."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 4)) + 0.1 * rng.normal(size=(n, 4)) + [0, 5, -3, 10]
    lines = ["alpha,beta,gamma,delta"]
    for i, row in enumerate(x):
        cells = [f"{v:.4f}" for v in row]
        if i % 3 == 0:
            cells[i % 4] = ""
        if i % 7 == 0:
            cells[(i + 1) % 4] = "NA"
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def cells(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    data = write_csv(folder / "table.csv")
    out = folder / "run"
    assert main([*TRAIN, "--dataset", str(data), "--split", "0.6,0.2,0.2", "--out", str(out)]) == 0
    return out, data


def test_train_records_the_file_and_its_settings(run):
    out, data = run
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == str(data.resolve()) and config["split"] == "0.6,0.2,0.2"
    record = json.loads((out / "data_file.json").read_text())
    assert record["header"] is True and record["columns"] == ["alpha", "beta", "gamma", "delta"]
    assert len(record["split"]["train"]) == 72 and len(record["split"]["test"]) == 24


def test_round_trip_keeps_observed_cells_fills_missing_ones_and_the_header(run, tmp_path):
    out, data = run
    target = tmp_path / "filled.csv"
    assert main(["impute", str(out), "--input", str(data), "--output", str(target), "-k", "20", "--quiet"]) == 0
    before, after = cells(data), cells(target)
    assert after[0] == before[0] and len(after) == len(before)
    missing = 0
    for old, new in zip(before[1:], after[1:], strict=True):
        for a, b in zip(old, new, strict=True):
            if a.strip().lower() in ("", "na", "nan"):
                missing += 1
                assert np.isfinite(float(b))
            else:
                assert b == a  # the observed cell's text, unchanged
    assert missing == 40 + 18  # one cell in rows i % 3 == 0, another in rows i % 7 == 0


def test_multiple_imputation_as_one_long_table(run, tmp_path):
    out, data = run
    target = tmp_path / "filled.csv"
    assert main(["impute", str(out), "--input", str(data), "--output", str(target), "-k", "20", "--draws", "3",
                 "--long", "--quiet"]) == 0
    long = cells(tmp_path / "filled_draws.csv")
    assert len(long) == 1 + 3 * 120 and "imputation" in long[0]


def test_score_is_the_row_wise_score_on_the_file_scale(run, tmp_path):
    """`deepem score` on the test split's rows = score_rows on the split in model units (what evaluate
    --observed reads) plus the standardisation's Jacobian; and a row's score does not depend on the
    other rows of the file (each row draws its own particles, see evaluation/own_rows.py)."""
    out, data = run
    record = json.loads((out / "data_file.json").read_text())
    lines = data.read_text().splitlines()
    test_rows = tmp_path / "test_rows.csv"
    test_rows.write_text("\n".join([lines[0]] + [lines[1 + i] for i in record["split"]["test"]]) + "\n")
    trained = load_trained_run(out, warn=lambda _: None)
    split, split_mask = trained.data.split("test"), trained.data.test_mask
    theirs = score_rows(trained.model, split, split_mask, 30, "completed", seed=0).per_point.numpy()
    assert main(["score", str(out), "--input", str(test_rows), "--output", str(tmp_path / "s.csv"),
                 "--particles", "30", "--proposal", "completed", "--quiet"]) == 0
    rows = cells(tmp_path / "s.csv")[1:]
    mask = np.array([[c.strip().lower() not in ("", "na") for c in r] for r in cells(test_rows)[1:]])
    jacobian = -(mask * np.log(record["standardization"]["std"])).sum(1)
    np.testing.assert_allclose([float(r[2]) for r in rows], theirs + jacobian, rtol=1e-12)
    reversed_rows = tmp_path / "reversed.csv"
    reversed_rows.write_text("\n".join([lines[0]] + [lines[1 + i] for i in record["split"]["test"][::-1]]) + "\n")
    assert main(["score", str(out), "--input", str(reversed_rows), "--output", str(tmp_path / "r.csv"),
                 "--particles", "30", "--proposal", "completed", "--quiet"]) == 0
    assert [r[2] for r in cells(tmp_path / "r.csv")[1:]] == [r[2] for r in rows][::-1]


def test_resume_refuses_a_changed_file(run, tmp_path, capsys):
    out, data = run
    original = data.read_bytes()
    try:
        data.write_text(data.read_text().replace("alpha", "alpho"))
        assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "has changed since the run recorded it" in err and "sha256" in err
    finally:
        data.write_bytes(original)


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a bad file, a fragment its one-line message must hold)."""
    good = [f"{i * 0.1:.1f},{(i * 7) % 5 + 0.5:.1f},{i % 3 + 1.5:.1f}" for i in range(20)]

    def text(name: str, rows: list[str], header: str = "a,b,c") -> Path:
        path = folder / name
        path.write_text("\n".join([header, *rows]) + "\n")
        return path

    npy3 = folder / "rank4.npy"
    np.save(npy3, np.zeros((12, 2, 2, 2)))
    npy_text = folder / "strings.npy"
    np.save(npy_text, np.array([["a", "b"]] * 12))
    return {
        "ragged": (text("ragged.csv", good[:5] + ["1.0,2.0"] + good[5:]), "line 7"),
        "text": (text("text.csv", good[:3] + ["1.0,abc,2.0"] + good[3:]), "abc"),
        "all_missing_column": (text("col.csv", [r.rsplit(",", 1)[0] + "," for r in good]), "c"),
        "all_missing_row": (text("row.csv", good[:4] + [",,"] + good[4:]), "line 6"),
        "inf": (text("inf.csv", good[:2] + ["1.0,inf,2.0"] + good[2:]), "line 4"),
        "empty": (text("empty.csv", [], header=""), "empty"),
        "few_rows": (text("few.csv", good[:5]), "10"),
        "npy_rank": (npy3, "rank4.npy"),
        "npy_dtype": (npy_text, "strings.npy"),
    }


@pytest.mark.parametrize("case", ["ragged", "text", "all_missing_column", "all_missing_row", "inf",
                                  "empty", "few_rows", "npy_rank", "npy_dtype"])
def test_bad_training_files_are_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    path, fragment = _bad_files(tmp_path)[case]
    out = tmp_path / "run"
    assert main([*TRAIN, "--dataset", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("deepem train: error:") and fragment in err, err
    assert not out.exists()


@pytest.mark.parametrize("command", ["impute", "score"])
def test_rows_with_other_columns_are_refused_at_impute_and_score(run, command, tmp_path, capsys):
    out, _ = run
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("alpha,beta,gamma\n" + "\n".join(f"{i}.5,{i % 4}.0,{i % 3}.25" for i in range(12)) + "\n")
    target = tmp_path / "out.csv"
    assert main([command, str(out), "--input", str(wrong), "--output", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "wrong.csv" in err and "4" in err and "3" in err, err
    assert not target.exists() and not Path(f"{target}.json").exists()


@pytest.mark.parametrize("case", ["ragged", "text", "inf", "empty"])
def test_bad_rows_at_impute_are_one_line_nothing_written(run, case, tmp_path, capsys):
    out, _ = run
    path, fragment = _bad_files(tmp_path)[case]
    target = tmp_path / "out.csv"
    assert main(["impute", str(out), "--input", str(path), "--output", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and fragment in err, err
    assert not target.exists()


def test_input_without_output_is_one_line(run, capsys):
    out, data = run
    assert main(["impute", str(out), "--input", str(data)]) == 2
    assert "--input and --output go together" in capsys.readouterr().err


def test_ctrl_c_stops_impute_within_a_second_with_exit_130_and_nothing_written(tmp_path):
    """A run trained on a benchmark (digits) imputing new rows given as .npy: Ctrl-C while it works."""
    run = tmp_path / "digits"
    assert main(["--threads", "1", "train", "--dataset", "digits", "-m", "miwae", "--missing", "mcar:0.3",
                 "--latent-dim", "4", "--hidden", "16", "--epochs", "1", "--train-limit", "100",
                 "--valid-particles", "5", "--quiet", "--out", str(run)]) == 0
    rng = np.random.default_rng(0)
    rows = (rng.random((3000, 64)) < 0.5).astype(np.float64)  # binary: the run's Bernoulli likelihood refuses others
    rows[rng.random(rows.shape) < 0.3] = np.nan
    np.save(tmp_path / "rows.npy", rows)
    target = tmp_path / "filled.npy"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = ["--threads", "1", "impute", str(run), "--input", str(tmp_path / "rows.npy"), "--output", str(target),
            "-k", "5000"]
    # "ready" once the imports are done (slow on a loaded machine), so the signal reaches `main`, not an import
    code = ("import sys, time, deepem.cli; print('ready', flush=True); "
            f"rc = deepem.cli.main({args!r}); print(time.monotonic(), flush=True); sys.exit(rc)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(3)  # the run loaded and imputing (3000 rows at K = 5000 take far longer)
    assert proc.poll() is None
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "deepem impute: interrupted"
    # The work stops at once (between two chunks); the interpreter's own exit after it is not counted
    # (seconds on a loaded machine, as its start is).
    stopped = float(out.strip()) - sent
    assert stopped < 1.0, f"took {stopped:.2f} s to stop"
    assert not target.exists()


@pytest.mark.parametrize(("choice", "expected"), [("none", set()), ("mean", {"mean"}),
                                                  ("iterative", {"mean", "iterative"})])
def test_baselines_choice_and_limit(choice, expected, tmp_path_factory):
    run = tmp_path_factory.getbasetemp() / "digits-baselines"
    if not run.exists():
        assert main(["--threads", "1", "train", "--dataset", "digits", "-m", "miwae", "--missing", "mcar:0.3",
                     "--latent-dim", "4", "--hidden", "16", "--epochs", "1", "--train-limit", "100",
                     "--valid-particles", "5", "--quiet", "--out", str(run)]) == 0
    assert main(["impute", str(run), "--split", "test", "-k", "5", "--limit", "25", "--baselines", choice,
                 "--quiet"]) == 0
    summary = json.loads((run / "imputation.json").read_text())
    assert {"mean", "iterative"} & set(summary) == expected and summary["n_points"] == 25
