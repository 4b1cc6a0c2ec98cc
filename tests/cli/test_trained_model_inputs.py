"""What a TrainedModel (`deepem.load`, a scikit-learn estimator's `model_`) and the estimators refuse up
front, in one line naming what was given and what to give: rows as text or other objects, counts that are
not whole numbers, and requests whose memory no machine has."""

from __future__ import annotations

import numpy as np
import pytest

from deepem.errors import UserError
from deepem.sklearn import DeepDensityEstimator, DeepImputer

TINY = {"epochs": 1, "hidden": (4,), "particles": 2, "eval_particles": 4, "random_state": 0}


def rows(n: int = 30) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(n, 2))
    x[::4, 1] = np.nan
    return x


@pytest.fixture(scope="module")
def imputer() -> DeepImputer:
    return DeepImputer(**TINY).fit(rows())


def one_line_error(call, kind=ValueError) -> str:
    with pytest.raises(kind) as caught:
        call()
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("given, where, shown", [
    ([["1", "x"]], "x[0, 1]", "'x'"),
    ([["1", "2"]], "x[0, 0]", "'1'"),  # numbers as text: not converted behind the user's back
    (np.array([[1.5, "a"]], dtype=object), "x[0, 1]", "'a'"),
])
@pytest.mark.parametrize("method", ["impute", "score", "impute_draws"])
def test_trained_model_refuses_text_rows_in_one_line(imputer, method, given, where, shown):
    message = one_line_error(lambda: getattr(imputer.model_, method)(given, particles=2))
    assert message.startswith(f"{where} is text ({shown}): give numbers") and "pandas.to_numeric" in message


def test_trained_model_refuses_objects_and_ragged_rows_and_takes_none_as_missing(imputer):
    model = imputer.model_
    message = one_line_error(lambda: model.impute(np.array([[1.0, {"a": 1}]], dtype=object), particles=2), TypeError)
    assert message.startswith("x[0, 1] is a dict ({'a': 1}), not a number")
    assert "rows of equal length" in one_line_error(lambda: model.score([[1.0, 2.0], [3.0]], particles=2))
    assert "complex128" in one_line_error(lambda: model.score(np.ones((1, 2), dtype=complex), particles=2))
    filled = model.impute(np.array([[0.5, None]], dtype=object), particles=2)
    assert filled.shape == (1, 2) and filled[0, 0] == 0.5 and np.isfinite(filled[0, 1])


@pytest.mark.parametrize("n", ["5", 2.5, True])
def test_sample_and_draw_counts_must_be_whole_numbers(imputer, n):
    message = one_line_error(lambda: imputer.model_.sample(n), TypeError)
    assert message == f"the number of samples n must be a whole number >= 1, got {n!r} ({type(n).__name__})"
    message = one_line_error(lambda: imputer.model_.impute_draws(rows(2), n, particles=2), TypeError)
    assert message.startswith("n_draws must be a whole number >= 1")


@pytest.mark.parametrize("estimator", [DeepImputer(**TINY), DeepDensityEstimator(**TINY)])
def test_estimators_refuse_text_in_fit_and_after(imputer, estimator):
    text = rows().astype(str)
    text[3, 1] = "x"
    message = one_line_error(lambda: estimator.fit(text))
    assert message.startswith("X[3, 1] is text ('x'): give numbers")
    apply = imputer.transform if isinstance(estimator, DeepImputer) else DeepDensityEstimator(**TINY).fit(
        rows()).score_samples
    assert one_line_error(lambda: apply([["1", "x"]])).startswith("X[0, 1] is text ('x')")


def test_requests_beyond_the_machines_memory_are_refused_before_any_work(imputer):
    model = imputer.model_
    message = one_line_error(lambda: model.sample(10**13))  # each: (3 x 2 columns + 4 hidden + 1 latent) x 8 bytes
    assert message.startswith("10000000000000 samples of 2 columns needs about 880.0 TB of memory")
    assert message.endswith("free on this machine; ask for fewer (--n, n), or draw them a part at a time with "
                            "different seeds")
    message = one_line_error(lambda: model.impute_draws(rows(2), 10**13, particles=2))
    assert message.startswith("10000000000000 multiple imputations of 2 rows of 2 columns needs about 960.0 TB")
    assert "ask for fewer draws (--draws, n_draws)" in message
    assert imputer.sample(rows(3), n_draws=2).shape == (2, 3, 2)  # a request that fits goes on


def test_the_memory_check_says_the_number_and_what_is_free():
    from deepem.workflows.memory import require_memory

    require_memory(1000, "a request", "ask for less", available=1000)  # exactly what is free: fine
    message = one_line_error(lambda: require_memory(2_500_000_000, "7 draws", "ask for fewer", available=10**9))
    assert message == ("7 draws needs about 2.5 GB of memory, more than the 1.0 GB free on this machine; ask for "
                       "fewer")
