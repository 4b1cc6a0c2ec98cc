"""A CSV with missing cells end to end through the library functions the CLI calls (workflows/own_runs.py,
with the run's TrainedModel): train on it, impute it and new rows back into the same format (observed cells
unchanged as text, no missing cell left, header kept), score rows as the evaluation does, and refuse a
file with other columns without writing anything."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from deepem.data.own_dataset import load_file_dataset
from deepem.data.tables import MISSING_TOKENS, TableError
from deepem.errors import UserError
from deepem.evaluation.own_rows import score_rows
from deepem.methods.miwae import MIWAE
from deepem.models import ModelConfig, make_model
from deepem.models.likelihoods import OutsideSupportError, check_rows
from deepem.training import TrainConfig, Trainer
from deepem.workflows.own_data import load_dataset_record, reload_file_dataset, save_dataset_record
from deepem.workflows.own_runs import impute_file, score_file
from deepem.workflows.trained_model import DataTransform, TrainedModel, load_model


def make_csv(path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    values = z @ np.array([[1.0, -2.0, 0.5, 3.0]]) * [1, 10, 1, 100] + 0.1 * rng.normal(size=(n, 4))
    cells = [[f"{v:.3f}" for v in row] for row in values]
    for r, row in enumerate(cells):
        for j in rng.choice(4, size=r % 3, replace=False):  # 0, 1 or 2 missing cells per row
            row[j] = ("", "NA", "NaN")[(r + j) % 3]
    path.write_text("alpha,beta,gamma,delta\n" + "".join(",".join(r) + "\n" for r in cells))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    path = make_csv(folder / "mine.csv")
    data = load_file_dataset(path, seed=0)
    torch.manual_seed(0)
    architecture = ModelConfig(latent_dim=2, hidden=[8], likelihood="gaussian")
    model = make_model(architecture, 4)
    run = folder / "run"
    # (config.json must say the model: loading the run rebuilds it from there)
    settings = TrainConfig(dataset=str(path), epochs=3, batch_size=16, lr=1e-2, valid_every=0, model=architecture)
    trainer = Trainer(model, MIWAE(particles=5), data.splits.train, run, settings,
                      train_mask=data.splits.train_mask, log=lambda s: None, progress=False)
    trainer.start()
    trainer.fit()
    save_dataset_record(run, data)
    return load_model(run), load_dataset_record(run), data, folder


def cells(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_round_trip_keeps_observed_cells_and_fills_every_missing_one(trained):
    model, record, data, folder = trained
    seen = []
    summary = impute_file(model, record["path"], folder / "out.csv", particles=50, draws=2, seed=1,
                          batch_size=25, progress=seen.append)
    before, after = cells(record["path"]), cells(folder / "out.csv")
    assert after[0] == before[0] == ["alpha", "beta", "gamma", "delta"] and len(after) == len(before)
    n_missing = 0
    for old_row, new_row in zip(before[1:], after[1:], strict=True):
        for old, new in zip(old_row, new_row, strict=True):
            if old.strip().lower() in MISSING_TOKENS:
                n_missing += 1
                assert np.isfinite(float(new))
            else:
                assert new == old  # the text itself, not only the number
    assert n_missing == summary["n_missing"] == 60 and seen == [25, 25, 10]
    assert [p.split("/")[-1] for p in summary["outputs"]] == ["out.csv", "out_1.csv", "out_2.csv"]
    draw = cells(folder / "out_2.csv")
    assert draw != after and all(float(c) == float(c) for row in draw[1:] for c in row)
    long = impute_file(model, record["path"], folder / "long.csv", particles=50, draws=2, seed=1,
                       batch_size=25, long=True)
    assert [p.split("/")[-1] for p in long["outputs"]] == ["long.csv", "long_draws.csv"]
    stacked = cells(folder / "long_draws.csv")
    assert stacked[0] == before[0] + ["imputation"] and len(stacked) == 1 + 2 * 60
    assert [r[:4] for r in stacked[61:]] == draw[1:] and {r[4] for r in stacked[1:]} == {"1", "2"}


def test_scores_are_the_row_wise_scores_on_the_file_scale(trained):
    model, record, data, folder = trained
    summary = score_file(model, record["path"], folder / "scores.csv", particles=30, seed=2, batch_size=20,
                         proposal="completed")
    rows = cells(folder / "scores.csv")
    assert rows[0] == ["row", "n_observed", "log_likelihood"] and len(rows) == 61
    scores = np.array([float(r[2]) for r in rows[1:]])
    table = data.table
    x = torch.from_numpy(np.nan_to_num((table.values - record["standardization"]["mean"])
                                       / record["standardization"]["std"]))
    theirs = score_rows(model.model, x, torch.from_numpy(table.mask), particles=30, batch_size=20, seed=2,
                        proposal="completed")
    jacobian = -(table.mask * np.log(record["standardization"]["std"])).sum(1)
    np.testing.assert_allclose(scores, theirs.per_point.numpy() + jacobian, rtol=1e-12)
    saved = json.loads((folder / "scores.csv.json").read_text())
    assert saved["particles"] == 30 and saved["proposal"] == "completed" and "K=30" in saved["estimator"]
    assert summary["mean"] == pytest.approx(scores.mean())


def test_new_rows_with_other_columns_are_refused_and_nothing_is_written(trained):
    model, record, _, folder = trained
    other = folder / "other.csv"
    other.write_text("alpha,beta,gamma\n1,2,\n")
    with pytest.raises(TableError, match="has 3 columns but the model was trained on 4"):
        impute_file(model, other, folder / "no.csv")
    with pytest.raises(TableError, match="has 3 columns"):
        score_file(model, other, folder / "no_scores.csv")
    assert not (folder / "no.csv").exists() and not (folder / "no_scores.csv").exists()
    new = folder / "new.csv"
    new.write_text("alpha,beta,gamma,delta\n1,,3,\n")  # one new row: fewer than 10 rows is fine here
    impute_file(model, new, folder / "new_out.csv", particles=20)
    assert cells(folder / "new_out.csv")[1][0::2] == ["1", "3"]


def test_the_record_rebuilds_the_data_and_a_changed_file_is_refused(trained):
    _, record, data, folder = trained
    again = reload_file_dataset(record)
    assert torch.equal(again.splits.train.nan_to_num(), data.splits.train.nan_to_num())
    copy = dict(record, path=str(make_csv(folder / "changed.csv", seed=1)))
    with pytest.raises(ValueError, match="has changed since the run recorded it: recorded sha256"):
        reload_file_dataset(copy)


def test_a_value_beyond_float32_is_refused_by_train_impute_and_score_and_nothing_is_written(trained):
    model, record, _, folder = trained
    huge = folder / "huge.csv"
    huge.write_text(make_csv(folder / "base.csv").read_text() + "1e300,1,2,3\n")
    where = re.escape("huge.csv: line 62, column 1 ('alpha'): 1e+300 is beyond 3.4e+38")
    with pytest.raises(TableError, match=where):
        load_file_dataset(huge)
    with pytest.raises(TableError, match=where):
        impute_file(model, huge, folder / "huge_out.csv")
    with pytest.raises(TableError, match=where):
        score_file(model, huge, folder / "huge_scores.csv")
    assert not (folder / "huge_out.csv").exists() and not (folder / "huge_scores.csv").exists()


def bernoulli_run():
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=2, hidden=[8], likelihood="bernoulli"), 4).eval()
    transform = DataTransform(["1", "2", "3", "4"], False, None, None, "bernoulli", "four-bits")
    return model, TrainedModel(model, transform, "miwae", {}, {}, 0)


def test_check_rows_refuses_values_outside_the_likelihoods_support():
    model, _ = bernoulli_run()
    x = torch.tensor([[0.0, 1.0, float("nan"), 1.0], [1.0, 0.0, 16.0, 3.0]])
    mask = ~torch.isnan(x)
    check_rows(model.likelihood, x[:1], mask[:1])  # NaN is missing: fine
    with pytest.raises(OutsideSupportError) as caught:
        check_rows(model.likelihood, x, mask, source="f.npy: ")
    assert str(caught.value).startswith("f.npy: row 1, column 2: 16 is outside what the model's bernoulli "
                                        "likelihood gives (0 or 1); 2 such values in all; binarise the rows")
    assert isinstance(caught.value, UserError)
    gaussian = make_model(ModelConfig(latent_dim=2, hidden=[8], likelihood="gaussian"), 4).likelihood
    check_rows(gaussian, x, mask)  # any finite number
    with pytest.raises(OutsideSupportError, match="row 0, column 3: inf is outside"):
        check_rows(gaussian, torch.tensor([[0.0, 1.0, 2.0, float("inf")]]))


def test_a_bernoulli_model_refuses_to_score_or_impute_grey_levels_and_writes_nothing(tmp_path):
    _, trained = bernoulli_run()
    digits = np.arange(12 * 4, dtype=np.float64).reshape(12, 4) % 17  # values 0..16, as scikit-learn's digits
    digits[0, 0] = np.nan
    np.save(tmp_path / "digits.npy", digits)
    for run in (score_file, impute_file):
        with pytest.raises(OutsideSupportError, match="digits.npy: row 0, column 3: 2 is outside what the model's "
                                                      "bernoulli likelihood gives"):
            run(trained, tmp_path / "digits.npy", tmp_path / "out.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.npy"]
    np.save(tmp_path / "binary.npy", np.where(np.isnan(digits), np.nan, digits > 8))
    score_file(trained, tmp_path / "binary.npy", tmp_path / "s.csv", particles=5)
    with pytest.raises(OutsideSupportError, match="row 0, column 2: 2 is outside"):  # the Python API too (0-based)
        trained.score(digits[:2], particles=5)
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 13


def test_the_model_object_refuses_answers_that_overflow(trained):
    """A row in the likelihood's support but far outside the training data (1e30 in a standardised column)
    overflows the model's arithmetic: the Python API says so instead of returning NaN or -inf."""
    model = trained[0]
    row = [[1e30, np.nan, 0.0, 0.0]]
    with pytest.raises(UserError, match=r"the imputation of row 0 \(0-based\) is not finite"):
        model.impute(row, particles=5)
    with pytest.raises(UserError, match=r"the log-likelihood of row 0 \(0-based\) is not finite"):
        model.score(row, particles=5)
    assert np.isfinite(model.score([[0.1, np.nan, 0.0, 0.0]], particles=5)).all()
