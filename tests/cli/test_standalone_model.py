"""A trained model stands on its own: train on a CSV, delete the CSV, and `deepem impute`, `score`, `sample`
and `evaluate --input` still work (they load the run's TrainedModel and never read the training file), as
does `deepem.load(RUN)` in Python; only evaluating the run's own splits needs the file, and says so in one
line. A run on a table gets the table defaults and a folder named by the file's stem."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepem.evaluation.own_rows import score_rows
from deepem.methods.base import METHODS
from deepem.methods.miwae import MIWAE
from deepem.workflows.loading import load_trained_run
from deepem.workflows.own_runs import default_proposal
from deepem.workflows.trained_model import load_model

SRC = str(Path(__file__).resolve().parents[2] / "src")
#: a run on a benchmark dataset, in a second
DIGITS_TRAIN = ["--threads", "1", "train", "--dataset", "digits", "--latent-dim", "2", "--hidden", "8",
                "--train-limit", "40", "--valid-particles", "3", "--quiet", "--epochs", "1"]


def write_csv(path: Path, n: int = 50, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1)) @ np.array([[1.0, 2.0, -1.0, 0.5]]) * [1, 10, 1, 100] + 0.1 * rng.normal(size=(n, 4))
    rows = [[f"{v:.4f}" for v in row] for row in x]
    for i, row in enumerate(rows):
        if i % 3 == 0:
            row[i % 4] = ""
    path.write_text("a,b,c,d\n" + "".join(",".join(r) + "\n" for r in rows))


def cells(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """The bash session a user would type, run once: its folder and each command's exit code and output."""
    folder = tmp_path_factory.mktemp("standalone")
    write_csv(folder / "table.csv")
    (folder / "new.csv").write_text((folder / "table.csv").read_text())
    script = """
set -u
deepem() { python -m deepem "$@"; }
deepem --threads 1 train --dataset table.csv -m miwae --epochs 1 --quiet > train.out 2>&1; echo "train $?"
rm table.csv
RUN=runs/table-miwae-k20-s0
deepem impute $RUN --input new.csv --output filled.csv -k 20 --quiet > impute.out 2>&1; echo "impute $?"
deepem score $RUN --input new.csv --output scores.csv -k 20 --quiet > score.out 2>&1; echo "score $?"
deepem sample $RUN --n 7 > sample.out 2>&1; echo "sample $?"
deepem evaluate $RUN --input new.csv --particles 20 --quiet > evaluate.out 2>&1; echo "evaluate $?"
deepem evaluate $RUN --observed --particles 20 --quiet > split.out 2>&1; echo "split $?"
python -c "import sys, numpy as np, deepem
assert 'torch' not in sys.modules
m = deepem.load('$RUN')
filled = m.impute(np.array([[0.5, np.nan, -0.5, np.nan]]), particles=20)
print(filled.shape, bool(np.isnan(filled).any()), filled[0, 0], filled[0, 2])" > python.out 2>&1; echo "python $?"
"""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:"
           f"{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    codes = dict(line.split() for line in done.stdout.split("\n") if line.strip())
    return folder, {name: int(code) for name, code in codes.items()}


def test_train_uses_the_table_defaults_and_names_the_folder_by_the_files_stem(walkthrough):
    folder, codes = walkthrough
    assert codes["train"] == 0, (folder / "train.out").read_text()
    config = json.loads((folder / "runs" / "table-miwae-k20-s0" / "config.json").read_text())
    assert config["model"]["hidden"] == [128, 128, 128] and config["model"]["latent_dim"] == 3
    assert config["batch_size"] == 64 and config["method_options"]["particles"] == 20 and config["lr"] == 1e-3


def test_impute_and_score_work_without_the_training_file(walkthrough):
    folder, codes = walkthrough
    assert not (folder / "table.csv").exists()
    assert codes["impute"] == 0, (folder / "impute.out").read_text()
    before, after = cells(folder / "new.csv"), cells(folder / "filled.csv")
    assert after[0] == before[0] and len(after) == len(before) == 51
    for old, new in zip(before[1:], after[1:], strict=True):
        assert all(b == a if a else np.isfinite(float(b)) for a, b in zip(old, new, strict=True))
    assert codes["score"] == 0, (folder / "score.out").read_text()
    scores = np.array([float(r[2]) for r in cells(folder / "scores.csv")[1:]])
    model = load_model(folder / "runs" / "table-miwae-k20-s0")
    from_python = model.score(np.genfromtxt(folder / "new.csv", delimiter=",", skip_header=1), particles=20)
    assert np.array_equal(scores, from_python)  # the CLI and deepem.load: one model, one computation


def test_sample_writes_rows_drawn_from_the_model_as_a_table(walkthrough):
    folder, codes = walkthrough
    assert codes["sample"] == 0, (folder / "sample.out").read_text()
    rows = cells(folder / "runs" / "table-miwae-k20-s0" / "samples.csv")
    assert rows[0] == ["a", "b", "c", "d"] and len(rows) == 8
    drawn = np.array(rows[1:], dtype=float)
    model = load_model(folder / "runs" / "table-miwae-k20-s0")
    assert np.array_equal(drawn, model.sample(7, seed=0))  # seeded, on the file's scale (repr round-trips)


def test_evaluate_input_writes_a_record_and_the_split_needs_the_file(walkthrough):
    folder, codes = walkthrough
    assert codes["evaluate"] == 0, (folder / "evaluate.out").read_text()
    record = json.loads((folder / "runs" / "table-miwae-k20-s0" / "evaluation.json").read_text())
    assert record["split"] == "input-new" and record["n_points"] == 50 and record["particles"] == 20
    assert record["file"] == "evaluations/iw-k20-input-new-observed-all-s0-step1.json"
    assert record["input"].endswith("new.csv") and "log p(x_o)" in record["estimator"]
    scores = np.array([float(r[2]) for r in cells(folder / "scores.csv")[1:]])
    # the same K, seed and scale as score's; score draws row-wise (evaluation/own_rows.py) and evaluate through the
    # estimator's driver, so they are two Monte Carlo estimates of the same bound
    assert record["log_likelihood"] == pytest.approx(scores.mean(), rel=1e-2)
    assert codes["split"] == 2
    message = (folder / "split.out").read_text().strip()
    assert len(message.splitlines()) == 1 and "table.csv" in message and "--input" in message
    assert "Traceback" not in message


def test_deepem_load_in_python_imputes_without_the_file(walkthrough):
    folder, codes = walkthrough
    out = (folder / "python.out").read_text()
    assert codes["python"] == 0, out
    assert out.split() == ["(1,", "4)", "False", "0.5", "-0.5"]


def test_the_imputation_proposal_is_the_method_classes_own_also_for_a_method_registered_outside():
    class Completer(MIWAE):
        name = "test-completer"
        imputation_proposal = "completed"

    METHODS[Completer.name] = Completer
    try:
        assert default_proposal("test-completer") == "completed"
    finally:
        del METHODS[Completer.name]
    assert default_proposal("miwae") == "zero-filled" and default_proposal("miss-iwem-woa") == "completed"


@pytest.mark.parametrize("fixture", ["iwae", "miss-iwem"])
def test_run_folders_of_older_deepem_load_as_a_trained_model(fixture):
    """No data dimension in their checkpoints: the benchmark gives it; the parameters are the run's."""
    folder = Path(__file__).resolve().parents[1] / "legacy" / "fixtures" / fixture
    model, run = load_model(folder), load_trained_run(folder, warn=lambda _: None)
    mine, theirs = model.model.state_dict(), run.model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert model.step == run.step and model.imputation_proposal == default_proposal(fixture)
    x = run.data.test[:5]
    assert np.array_equal(model.score(x, particles=10),  # no rescaling: the scores of the run's own model
                          score_rows(run.model, x.double(), None, 10).per_point.numpy())


def forbid_dataset_loading(monkeypatch) -> None:
    """Make every loader of a registered dataset fail the test if called."""
    import deepem.data.registry as registry
    import deepem.workflows.trained_model as trained_model

    def gone(*args, **kwargs):
        raise AssertionError("the dataset was loaded")

    for module in (registry, trained_model):
        for name in ("load_recorded_dataset", "load_dataset"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, gone)


def test_a_run_on_a_benchmark_dataset_loads_and_samples_without_its_dataset(tmp_path, monkeypatch, capsys):
    """Its checkpoints record the data transform: neither deepem.load nor `deepem sample` loads the dataset."""
    from deepem.cli import main
    from deepem.training.checkpoint_file import load_checkpoint

    run = tmp_path / "run"
    assert main([*DIGITS_TRAIN, "--out", str(run)]) == 0
    recorded = load_checkpoint(sorted((run / "checkpoints").glob("*.pt"))[-1])["data_transform"]
    assert recorded == {"columns": [str(j + 1) for j in range(64)], "header": False, "standardization": None,
                        "image_shape": [8, 8], "likelihood": "bernoulli", "dataset": "digits", "benchmark": True}

    forbid_dataset_loading(monkeypatch)
    model = load_model(run)
    assert model.transform.image_shape == (8, 8) and model.transform.benchmark and model.data_dim == 64
    drawn = model.sample(5, seed=3)
    assert drawn.shape == (5, 64) and set(np.unique(drawn)) <= {0.0, 1.0}
    assert np.array_equal(drawn, model.sample(5, seed=3))
    assert main(["sample", str(run), "--n", "4", "--output", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")


def test_bdmc_and_the_sample_grid_need_no_data(tmp_path, monkeypatch, capsys):
    """bdmc simulates its points from the model, and a grid draws from it: neither reads the data trained on
    (the CSV deleted; the benchmark's loaders made to fail)."""
    from deepem.cli import main
    from deepem.workflows.compare import sample_grid

    write_csv(tmp_path / "t.csv")
    run = tmp_path / "run"
    assert main(["--threads", "1", "train", "--dataset", str(tmp_path / "t.csv"), "-m", "miwae", "--latent-dim", "2",
                 "--hidden", "8", "--epochs", "1", "--quiet", "--out", str(run)]) == 0
    (tmp_path / "t.csv").unlink()
    assert main(["bdmc", str(run), "--points", "2", "--temperatures", "5", "--chains", "2", "--leapfrog-steps", "2",
                 "--quiet"]) == 0
    record = json.loads((run / "bdmc.json").read_text())
    newest = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))[-1]
    assert record["step"] == 1 and record["checkpoint"] == newest
    assert np.isfinite(record["gap"])

    images = tmp_path / "digits"
    assert main([*DIGITS_TRAIN, "--out", str(images)]) == 0
    capsys.readouterr()

    forbid_dataset_loading(monkeypatch)
    assert sample_grid(images, tmp_path / "grid.png", n=4).read_bytes().startswith(b"\x89PNG")
