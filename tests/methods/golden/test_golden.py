"""Every method's losses and gradients, and the evaluators' estimates, equal the record made before
the model-layer redesign (record.py), for the same seed and parameters."""

from __future__ import annotations

import pytest
import torch
from tests.methods.golden.record import CASES, RECORD, compute, evaluations, make_model_and_data


@pytest.fixture(scope="module")
def record():
    return torch.load(RECORD, weights_only=True)


@pytest.fixture
def model_and_data(record):
    model, x = make_model_and_data()
    model.load_state_dict(record["state_dict"])
    assert torch.equal(x, record["x"])
    return model, x


@pytest.mark.parametrize("own_generator", [False, True], ids=["global", "generator"])
@pytest.mark.parametrize("label,name,options", CASES, ids=[c[0] for c in CASES])
def test_method_outputs_match_record(record, model_and_data, label, name, options, own_generator):
    """With the global generator seeded, and with a generator of the same seed passed to the method
    (every draw then comes from it, in the library's order, and the global one is not touched)."""
    model, x = model_and_data
    expected = record["cases"][label]
    if own_generator:
        torch.manual_seed(12345)  # a different global stream: a draw that ignores `generator` would show
    got = compute(model, x, name, options, own_generator=own_generator)
    assert set(got["losses"]) == set(expected["losses"])
    for group, loss in expected["losses"].items():
        torch.testing.assert_close(got["losses"][group], loss, rtol=1e-12, atol=1e-12)
        for g_got, g_exp in zip(got["grads"][group], expected["grads"][group], strict=True):
            torch.testing.assert_close(g_got, g_exp, rtol=1e-10, atol=1e-12)


def test_evaluations_match_record(record, model_and_data):
    model, x = model_and_data
    got = evaluations(model, x)
    for name, values in record["evaluation"].items():
        torch.testing.assert_close(got[name], values, rtol=1e-10, atol=1e-10, msg=name)
