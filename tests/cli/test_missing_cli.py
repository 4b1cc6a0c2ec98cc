"""Incomplete data end to end from the command line: --missing trains on corrupted data with masks
drawn once from a seed, evaluate reports the complete split (or, with --observed, log p(x_o) of the
corrupted copy), impute writes the imputation record, arrays and figure."""

from __future__ import annotations

import json

import pytest
import torch

from deepem.cli import main
from deepem.workflows.loading import load_trained_run

TRAIN = ["--threads", "1", "train", "--dataset", "digits", "--latent-dim", "4", "--hidden", "16", "--epochs", "1",
         "--train-limit", "200", "--valid-particles", "5", "--quiet"]


@pytest.fixture(scope="module")
def incomplete_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "miwae"
    assert main([*TRAIN, "-m", "miwae", "--missing", "mcar:0.4", "--missing-seed", "3", "--out", str(out)]) == 0
    return out


def test_masks_are_drawn_once_from_the_seed_and_recorded(incomplete_run):
    config = json.loads((incomplete_run / "config.json").read_text())
    assert config["missing"] == "mcar:0.4" and config["missing_seed"] == 3
    a, b = load_trained_run(incomplete_run), load_trained_run(incomplete_run)
    mask = a.corrupted.splits.train_mask
    assert torch.equal(mask, b.corrupted.splits.train_mask)
    assert abs(float((~mask).float().mean()) - 0.4) < 0.02
    assert torch.isnan(a.corrupted.splits.train[~mask]).all()  # nothing can read a missing value
    assert torch.equal(a.data.test, a.corrupted.complete.test)  # evaluation data: the complete copy


def test_evaluate_complete_and_observed(incomplete_run, capsys):
    assert main(["evaluate", str(incomplete_run), "--particles", "50", "--limit", "40", "--quiet"]) == 0
    complete = json.loads((incomplete_run / "evaluation.json").read_text())
    assert main(["evaluate", str(incomplete_run), "--particles", "50", "--limit", "40", "--observed", "--quiet"]) == 0
    observed = json.loads((incomplete_run / "evaluation.json").read_text())
    assert complete["data"].startswith("complete test split") and "log p(x_o)" in observed["data"]
    assert observed["log_likelihood"] > complete["log_likelihood"]  # fewer dimensions to explain
    assert (incomplete_run / "evaluations" / f"iw-k50-test-observed-n40-s0-step{observed['step']}.json").is_file()


def test_impute_writes_record_arrays_and_figure(incomplete_run, capsys):
    assert main(["impute", str(incomplete_run), "--split", "test", "--particles", "50", "--draws", "2"]) == 0
    record = json.loads((incomplete_run / "imputation.json").read_text())
    assert record["split"] == "test" and record["particles"] == 50 and record["n_missing"] > 0
    assert {"model", "mean", "iterative"} <= set(record) and record["model"]["mse"] >= 0
    imputed = torch.from_numpy(__import__("numpy").load(incomplete_run / "imputation" / "imputed-test.npy"))
    assert torch.isfinite(imputed).all()
    assert (incomplete_run / "imputation" / "draws-test.npy").is_file()
    assert (incomplete_run / "figures" / "imputation-test.png").is_file()
    assert "imputation mse" in capsys.readouterr().out


def test_bad_missing_spec_and_complete_run_are_one_line_errors(tmp_path, capsys):
    assert main([*TRAIN, "--missing", "mcar:1.5", "--out", str(tmp_path / "bad")]) == 2
    assert "invalid missing = 'mcar:1.5'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_impute_limit_imputes_the_first_points_with_baselines_fitted_on_them_alone(incomplete_run, capsys):
    assert main(["impute", str(incomplete_run), "--split", "valid", "--particles", "20"]) == 0
    full = json.loads((incomplete_run / "imputation.json").read_text())
    whole = torch.from_numpy(__import__("numpy").load(incomplete_run / "imputation" / "imputed-valid.npy"))
    assert main(["impute", str(incomplete_run), "--split", "valid", "--particles", "20", "--limit", "30"]) == 0
    record = json.loads((incomplete_run / "imputation.json").read_text())
    trained = load_trained_run(incomplete_run)
    mask = trained.corrupted.splits.valid_mask
    truth = trained.corrupted.complete.valid
    assert record["limit"] == 30 and record["n_points"] == 30 and full["n_points"] == mask.shape[0] > 30
    assert record["n_missing"] == int((~mask[:30]).sum()) < full["n_missing"]
    imputed = torch.from_numpy(__import__("numpy").load(incomplete_run / "imputation" / "imputed-valid.npy"))
    assert imputed.shape == (30, mask.shape[1])
    assert torch.equal(imputed[mask[:30]], whole[:30][mask[:30]])  # observed entries as given
    # --limit applies to everything: the column means come from the observed entries of those 30 points
    m = mask[:30].double()
    means = torch.where(mask[:30], truth[:30].double(), 0.0).sum(0) / m.sum(0).clamp_min(1)
    expected = ((means.expand(30, -1) - truth[:30].double())[~mask[:30]] ** 2).mean()
    assert record["mean"]["mse"] == pytest.approx(float(expected), rel=1e-6)  # float32 imputed values
    assert "valid split (first 30 points)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:  # argparse: one line on stderr, exit code 2
        main(["impute", str(incomplete_run), "--limit", "0"])
    assert info.value.code == 2 and "--limit: invalid limit = '0': must be an integer >= 1" in capsys.readouterr().err
