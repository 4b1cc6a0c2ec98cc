"""One builder: `deepem train --dataset FILE.csv` and the scikit-learn estimators build and train the same
model through the same function with the same table defaults, so at the same settings and seed the CLI's
`impute` and `score` and the estimators' `transform` and `score_samples` give the same numbers, bit for bit."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", minversion="1.6")

from deepem.cli import build_parser, main  # noqa: E402
from deepem.data.tables import read_table  # noqa: E402
from deepem.models.config import STOPPING_DEFAULTS, TABLE_DEFAULTS  # noqa: E402
from deepem.sklearn import DeepDensityEstimator, DeepImputer  # noqa: E402
from deepem.workflows.assembly import run_config  # noqa: E402
from deepem.workflows.commands import config_from  # noqa: E402
from deepem.workflows.trained_model import load_model  # noqa: E402


def write_table(path, n=100, seed=0):
    """A 5-column CSV (no header) with correlated columns on different scales and ~20% empty cells."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 5)) * [1, 10, 1, 100, 0.1] + [0, 5, -3, 10, 1]
    lines = []
    for row in x:
        cells = [repr(float(v)) for v in row]
        for j in np.flatnonzero(rng.random(5) < 0.2)[:4]:
            cells[j] = ""
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_cli_and_the_estimators_give_the_same_imputations_and_scores_bit_for_bit(tmp_path):
    table = write_table(tmp_path / "table.csv")
    run = tmp_path / "run"
    seed, k = 3, 30
    # Settings left to the table defaults on both sides; the split keeps every row for training, as fit does.
    assert main(["--threads", "1", "train", "--dataset", str(table), "-m", "miwae", "--epochs", "2", "--split",
                 "1,0,0", "--valid-every", "0", "--seed", str(seed), "--out", str(run), "--quiet"]) == 0
    filled_csv, scores_csv = tmp_path / "filled.csv", tmp_path / "scores.csv"
    assert main(["impute", str(run), "--input", str(table), "--output", str(filled_csv), "-k", str(k),
                 "--seed", str(seed), "--quiet"]) == 0
    assert main(["score", str(run), "--input", str(table), "--output", str(scores_csv), "-k", str(k),
                 "--seed", str(seed), "--quiet"]) == 0
    x = read_table(table).values
    assert np.isnan(x).any()

    imputer = DeepImputer(method="miwae", epochs=2, eval_particles=k, random_state=seed).fit(x)
    cli_model = load_model(run)
    mine, theirs = cli_model.model.state_dict(), imputer.model_.model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[name], theirs[name]) for name in mine)
    assert cli_model.config["model"] == imputer.model_.config["model"]  # hidden 128-128-128, latent d - 1 = 4
    assert cli_model.config["model"]["hidden"] == [128, 128, 128] and cli_model.config["model"]["latent_dim"] == 4
    assert cli_model.config["batch_size"] == 64 and cli_model.method_options["particles"] == 20

    assert np.array_equal(read_table(filled_csv).values, imputer.transform(x))
    with open(scores_csv, newline="") as f:
        cli_scores = np.array([float(r[2]) for r in list(csv.reader(f))[1:]])
    density = DeepDensityEstimator(method="miwae", epochs=2, eval_particles=k, random_state=seed).fit(x)
    assert np.array_equal(cli_scores, density.score_samples(x))


def test_an_estimator_given_a_run_dir_writes_a_run_that_loads_as_its_model(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3)) * [1.0, 50.0, 0.01] + [0.0, 100.0, 5.0]
    x[rng.random(x.shape) < 0.2] = np.nan
    imputer = DeepImputer(epochs=2, hidden=(8,), random_state=0, run_dir=str(tmp_path / "run")).fit(x)
    loaded = load_model(tmp_path / "run")
    assert loaded.step == imputer.model_.step == 2 and loaded.checkpoint == "ckpt-000000002.pt"
    # the standardisation came with it
    assert np.array_equal(loaded.impute(x, particles=20), imputer.model_.impute(x, particles=20))
    in_memory = DeepImputer(epochs=2, hidden=(8,), random_state=0).fit(x)
    assert np.array_equal(in_memory.transform(x), imputer.transform(x))  # a run folder changes no number


def test_the_stopping_rule_gives_the_same_model_in_the_cli_and_in_scikit_learn(tmp_path):
    table = write_table(tmp_path / "table.csv")
    run = tmp_path / "run"
    rule = ["--max-iter", "40", "--validation-fraction", "0.2", "--valid-every-steps", "3", "--patience", "1",
            "--tol", "0.001"]
    assert main(["--threads", "1", "train", "--dataset", str(table), "-m", "miwae", "--split", "1,0,0",
                 "--valid-every", "0", "--seed", "3", "--out", str(run), "--quiet", *rule]) == 0
    x = read_table(table).values
    imputer = DeepImputer(method="miwae", max_iter=40, validation_fraction=0.2, valid_every_steps=3,
                          n_iter_no_change=1, tol=0.001, random_state=3).fit(x)
    cli_model = load_model(run)  # with early stopping: the best check's parameters
    mine, theirs = cli_model.model.state_dict(), imputer.model_.model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[name], theirs[name]) for name in mine)
    # the held-out RMSE stalled (by more than tol) once: stopped before the budget, the best check's update kept
    assert cli_model.step == imputer.best_iter_ < imputer.n_iter_ < 40 and imputer.n_iter_ % 3 == 0
    rmse = imputer.validation_scores_
    assert len(rmse) == imputer.n_iter_ // 3 and rmse[imputer.best_iter_ // 3 - 1] == rmse.min()


def test_a_constant_column_is_trained_on_the_same_way_in_the_cli_and_in_scikit_learn(tmp_path):
    table = tmp_path / "table.csv"
    rows = write_table(tmp_path / "source.csv").read_text().splitlines()
    table.write_text("\n".join(f"{row},4.0" for row in rows) + "\n")  # a sixth column, always 4
    run = tmp_path / "run"
    assert main(["--threads", "1", "train", "--dataset", str(table), "-m", "miwae", "--epochs", "2", "--split",
                 "1,0,0", "--valid-every", "0", "--seed", "1", "--out", str(run), "--quiet"]) == 0
    x = read_table(table).values
    x[::4, 5] = np.nan  # a missing cell of the constant column comes back as the constant
    imputer = DeepImputer(method="miwae", epochs=2, eval_particles=30, random_state=1).fit(read_table(table).values)
    assert np.array_equal(load_model(run).impute(x, particles=30, seed=1), imputer.transform(x))
    assert np.allclose(imputer.transform(x)[:, 5], 4.0, atol=0.05)


def test_the_cli_with_no_training_flags_and_the_estimator_with_its_defaults_train_the_same_model(tmp_path):
    table = write_table(tmp_path / "table.csv")
    run = tmp_path / "run"
    # typed: the split (every row for training, as fit), the seed, the method (the table default),
    # a shorter budget (the tests' time) and the rule turned on; its settings and the rest are the table defaults
    assert main(["--threads", "1", "train", "--dataset", str(table), "-m", "miwae", "--split", "1,0,0", "--seed",
                 "3", "--max-iter", "150", "--validation-fraction", "0.1", "--out", str(run), "--quiet"]) == 0
    imputer = DeepImputer(max_iter=150, validation_fraction=0.1, random_state=3).fit(read_table(table).values)
    cli_model = load_model(run)
    mine, theirs = cli_model.model.state_dict(), imputer.model_.model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[name], theirs[name]) for name in mine)
    assert imputer.validation_scores_.shape == (3,)  # checks at 50, 100, 150 updates
    for name in ("patience", "tol", "valid_every_steps", "batch_size", "lr"):
        assert cli_model.config[name] == imputer.model_.config[name] == {**TABLE_DEFAULTS, **STOPPING_DEFAULTS}[name]
    assert cli_model.step == imputer.best_iter_ <= imputer.n_iter_ == 150


def test_the_defaults_are_the_same_settings_in_the_cli_and_in_the_estimators(tmp_path):
    table = write_table(tmp_path / "table.csv")
    cli = config_from(build_parser().parse_args(["train", "--dataset", str(table)])).to_dict()
    for estimator in (DeepImputer(), DeepDensityEstimator()):
        mine = run_config(estimator.settings(0), table_columns=5).to_dict()
        different = {k for k in cli if cli[k] != mine[k]}
        # the data's source and split only: the method (miwae) and the budget (its cap in epochs) are the same
        assert different <= {"dataset", "split", "valid_every"}, different
    assert cli["max_iter"] == TABLE_DEFAULTS["max_iter"] and cli["validation_fraction"] == 0 == cli["patience"]
    assert cli["method"] == "miwae" and cli["max_epochs"] == TABLE_DEFAULTS["max_epochs"]
    # epochs given without max_iter is the budget; validation_fraction 0 leaves no rule behind
    by_epochs = config_from(build_parser().parse_args(["train", "--dataset", str(table), "--epochs", "3",
                                                       "--validation-fraction", "0"]))
    assert by_epochs.max_iter is None and by_epochs.epochs == 3 and by_epochs.patience == 0
    assert by_epochs.valid_every_steps == 0
    mine = run_config(DeepImputer(epochs=3, validation_fraction=0.0, n_iter_no_change=4).settings(0), table_columns=5)
    assert mine.max_iter is None and mine.epochs == 3 and mine.patience == 0 and mine.validation_fraction == 0
