"""benchmarks/collect_results.py finds evaluation records through the library's readers (report/compare.py),
whatever their files are named, and pairs AIS with IW on the same points."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from deepem.errors import MissingResultError
from deepem.evaluation.evaluate import evaluation_subset
from deepem.models.config import ModelConfig
from deepem.training.config import TrainConfig
from deepem.workflows.evaluate import evaluate_run
from deepem.workflows.train import train_run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import collect_results  # noqa: E402


def test_same_points_follow_the_evaluation_subsets():
    values = np.arange(50.0)
    ais = {"n_points": 5, "limit": 5, "subset": "fixed random 5 of 50"}
    # an IW evaluation of a larger limit: its first points are the AIS subset's
    assert collect_results.same_points({"limit": 20}, values[:20], ais).tolist() == values[:5].tolist()
    # an IW evaluation of every point: the subset's points picked by their indices
    picked = collect_results.same_points({"limit": None}, values, ais)
    assert picked.tolist() == values[evaluation_subset(50, 5).numpy()].tolist()
    assert picked.tolist() != values[:5].tolist()
    assert collect_results.same_points({"limit": None}, values, {"n_points": 50, "limit": None}) is values
    with pytest.raises(MissingResultError, match="does not cover"):
        collect_results.same_points({"limit": 3, "subset": "fixed random 3 of 50"}, values[:3], ais)


def test_aiwae_table_reads_records_by_what_they_say(tmp_path):
    config = TrainConfig(dataset="digits", method="iwae", method_options={"particles": 2}, epochs=1,
                         batch_size=100, train_limit=200, seed=0, model=ModelConfig())
    run = tmp_path / "iwae"
    train_run(config, run, progress=False, log=lambda _: None)
    iw = evaluate_run(run, "iw", particles=4, split="test", limit=30, progress=False)
    evaluate_run(run, "iw", particles=4, split="train", limit=30, progress=False)
    ais = evaluate_run(run, "ais", split="test", limit=10, temperatures=3, chains=2, progress=False)
    table = collect_results.aiwae_table(str(tmp_path))
    row = table.splitlines()[2].split(" | ")
    assert "IW-4 test (30 pts)" in table and "AIS test (10 pts)" in table
    assert row[0] == "| iwae" and float(row[1]) == pytest.approx(iw["log_likelihood"], abs=0.01)
    assert float(row[3]) == pytest.approx(ais["log_likelihood"], abs=0.01)
    with pytest.raises(MissingResultError, match="no run"):
        collect_results.aiwae_table(str(tmp_path / "iwae"))
