"""An evaluation is named by its estimator object: another registered estimator with a typed K runs with
that K and its record and files carry its name, and readers find records by what they say."""

from __future__ import annotations

import json

import pytest

from deepem.cli import main
from deepem.declarations.estimators import ESTIMATOR_SETTINGS
from deepem.evaluation import ESTIMATORS, IWEstimator, iw_log_likelihood, make_estimator
from deepem.evaluation.evaluate import evaluation_subset
from deepem.evaluation.settings import IWSettings
from deepem.report.compare import newest_evaluation_file, run_row
from deepem.workflows.evaluate import evaluate_run
from deepem.workflows.loading import load_trained_run

TINY = ["--dataset", "digits", "--latent-dim", "2", "--hidden", "8", "--batch-size", "50", "--quiet",
        "--valid-particles", "5", "--train-limit", "100", "--epochs", "1"]


class CopyOfIW(IWEstimator):
    """The IW estimate under a name of its own (a stand-in for any estimator with K)."""

    name = "iw-copy"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("records") / "vae"
    assert main(["train", "-m", "vae", "-k", "2", "--out", str(run), *TINY]) == 0
    return run


@pytest.fixture
def copy_registered(monkeypatch):
    monkeypatch.setitem(ESTIMATORS, CopyOfIW.name, CopyOfIW)
    monkeypatch.setitem(ESTIMATOR_SETTINGS, CopyOfIW.name, IWSettings)


def test_a_typed_k_goes_to_the_estimator_named_and_names_its_record(run_dir, copy_registered, capsys):
    assert main(["evaluate", str(run_dir), "--estimator", "iw-copy", "-k", "7", "--limit", "20", "--quiet"]) == 0
    record = json.loads((run_dir / "evaluation.json").read_text())
    trained = load_trained_run(run_dir)
    assert record["file"] == f"evaluations/iw-copy-k7-test-n20-s0-step{trained.step}.json"
    assert record["estimator_name"] == "iw-copy" and record["particles"] == 7
    assert (run_dir / record["file"]).is_file()
    assert (run_dir / "evaluations" / f"iw-copy-k7-test-n20-s0-step{trained.step}-per-point.npy").is_file()
    # K = 7 is the K used: the number is the IW estimate with 7 particles on the same points and seed
    data = trained.data.split("test")[evaluation_subset(trained.data.split("test").shape[0], 20)]
    assert record["log_likelihood"] == iw_log_likelihood(trained.model, data, particles=7, seed=0).mean
    # the reader finds it by its contents, under the estimator's name
    assert newest_evaluation_file(run_dir, "test", "iw-copy") == run_dir / record["file"]


def test_evaluate_run_takes_k_into_any_estimator_with_k_and_refuses_it_elsewhere(run_dir, copy_registered):
    record = evaluate_run(run_dir, estimator="iw-copy", particles=3, limit=10, progress=False)
    assert record["file"].startswith("evaluations/iw-copy-k3-test-n10-s0-step") and record["particles"] == 3
    # an estimator object: its own settings name the file
    record = evaluate_run(run_dir, estimator=make_estimator("iw-copy", particles=4), limit=10, progress=False)
    assert record["file"].startswith("evaluations/iw-copy-k4-")
    with pytest.raises(ValueError, match="particles"):  # AIS has no K: refused, not ignored
        evaluate_run(run_dir, estimator="ais", particles=10, limit=10, progress=False)


def test_a_row_reads_the_records_of_one_estimator(run_dir, copy_registered):
    evaluate_run(run_dir, estimator="iw-copy", particles=3, split="train", limit=10, progress=False)
    evaluate_run(run_dir, estimator="iw-copy", particles=3, split="test", limit=10, progress=False)
    row = run_row(run_dir, "vae")
    assert row["estimator"] == "IWAE bound, K=3" and row["test_points"] == 10


def test_records_of_earlier_versions_are_found_by_their_names(tmp_path):
    run = tmp_path / "old"
    (run / "evaluations").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"particles": 5, "epochs": 3, "seed": 0, "dataset": "digits"}))
    (run / "metrics.jsonl").write_text("")
    for name, ll in [("iw-k5000-test-all-s0.json", -1.0), ("iw-k50-test-n10-s0-step7.json", -2.0),
                     ("iw-k50-test-observed-n10-s0-step7.json", -3.0), ("iw-k5000-train-all-s0.json", -4.0)]:
        (run / "evaluations" / name).write_text(json.dumps({"log_likelihood": ll, "stderr": 0.1, "n_points": 1,
                                                            "estimator": "IWAE bound", "kl_to_prior": 0.0,
                                                            "active_units": 1}))
    found = {p.name for p in (run / "evaluations").glob("*.json")} - {"iw-k50-test-observed-n10-s0-step7.json"}
    assert newest_evaluation_file(run, "test").name in found
    assert newest_evaluation_file(run, "test", "iw").name in found
    assert newest_evaluation_file(run, "train", "iw").name == "iw-k5000-train-all-s0.json"
    with pytest.raises(Exception, match="no evaluation by the ais estimator"):
        newest_evaluation_file(run, "test", "ais")


def test_a_flag_of_another_estimators_setting_is_refused_in_one_line(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--estimator", "ais", "-k", "10", "--limit", "5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--particles: not a setting of the ais estimator" in err and "Traceback" not in err
    assert main(["evaluate", str(run_dir), "--ais-initial", "prior", "--limit", "5", "--quiet"]) == 2
    assert "--ais-initial: not a setting of the iw estimator" in capsys.readouterr().err
