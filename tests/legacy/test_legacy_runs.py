"""Run folders written before the training and CLI layers were redesigned still evaluate and resume to the
numbers the old code computed from them (observe.py says how the fixtures and the record were made)."""

from __future__ import annotations

import json

import pytest
from tests.legacy.observe import EXPECTED, RUNS, observe

RECORD = json.loads(EXPECTED.read_text())


@pytest.mark.parametrize("name", sorted(RUNS))
def test_old_run_folder_evaluates_and_resumes_to_the_old_numbers(name, tmp_path):
    got, expected = observe(name, tmp_path), RECORD[name]
    for key in ("evaluation", "resumed_evaluation"):
        assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-7), key
    assert got["parameter_sums"] == pytest.approx(expected["parameter_sums"], rel=1e-6, abs=1e-6)
    if expected["valid_bound"] is None:
        assert got["valid_bound"] is None
    else:
        assert got["valid_bound"] == pytest.approx(expected["valid_bound"], rel=1e-6)
