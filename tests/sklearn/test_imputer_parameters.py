"""DeepImputer's multiple imputation (fresh draws unless seeded) and scikit-learn's shared imputer
parameters: missing_values, add_indicator, keep_empty_features, the input's dtype kept."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.6")

from sklearn.impute import MissingIndicator  # noqa: E402

from deepem.sklearn import DeepDensityEstimator, DeepImputer  # noqa: E402

TINY = {"epochs": 1, "hidden": (4,), "particles": 2, "eval_particles": 8, "random_state": 0}


def holes(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1)) @ np.array([[1.0, 2.0, -1.0]]) + 0.1 * rng.normal(size=(n, 3))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[np.isnan(x).all(axis=1), 0] = 0.5
    return x


def test_sample_gives_fresh_draws_unless_seeded_and_transform_stays_put():
    x = holes()
    imputer = DeepImputer(**TINY).fit(x)
    first, second = imputer.sample(x, 3), imputer.sample(x, 3)
    missing = np.isnan(x)
    assert not np.array_equal(first[:, missing], second[:, missing])  # fresh on each call
    assert np.array_equal(imputer.sample(x, 3, random_state=5), imputer.sample(x, 3, random_state=5))
    assert np.array_equal(imputer.transform(x), imputer.transform(x))
    # the stream is the estimator's: a refit with the same random_state repeats the same calls
    refit = DeepImputer(**TINY).fit(x)
    assert np.array_equal(refit.sample(x, 3), first) and np.array_equal(refit.sample(x, 3), second)


def test_missing_values_minus_one_is_the_same_imputer_as_nan():
    x = holes()
    marked = np.where(np.isnan(x), -1.0, x)
    with_nan = DeepImputer(**TINY).fit(x)
    with_minus_one = DeepImputer(**TINY, missing_values=-1).fit(marked)
    assert np.array_equal(with_minus_one.transform(marked), with_nan.transform(x))
    with pytest.raises(ValueError, match="NaN"):  # NaN is not a missing value then: refused, as SimpleImputer
        with_minus_one.transform(x)
    density = DeepDensityEstimator(**TINY, missing_values=-1).fit(marked)
    assert np.array_equal(density.score_samples(marked), DeepDensityEstimator(**TINY).fit(x).score_samples(x))


def test_add_indicator_appends_scikit_learns_missing_indicator():
    x = holes()
    x[:, 2] = np.nan_to_num(x[:, 2], nan=1.0)  # column 2 complete: no indicator column (features="missing-only")
    imputer = DeepImputer(**TINY, add_indicator=True).fit(x)
    out = imputer.transform(x)
    expected = MissingIndicator().fit(x).transform(x)
    assert out.shape == (40, 5) and np.array_equal(out[:, 3:], expected.astype(float))
    assert np.array_equal(out[:, :3], DeepImputer(**TINY).fit(x).transform(x))
    assert list(imputer.get_feature_names_out()) == ["x0", "x1", "x2", "missingindicator_x0", "missingindicator_x1"]
    assert imputer.sample(x, 2).shape == (2, 40, 5)


def test_an_empty_feature_is_dropped_with_a_warning_or_kept_filled_with_zero():
    x = holes()
    with_empty = np.insert(x, 1, np.nan, axis=1)  # column 1 never observed
    without = DeepImputer(**TINY).fit(x).transform(x)
    dropping = DeepImputer(**TINY).fit(with_empty)
    with pytest.warns(UserWarning, match=r"Skipping features without any observed values: \[1\]"):
        dropped = dropping.transform(with_empty)
    assert np.array_equal(dropped, without)  # the model never saw the empty column
    assert list(dropping.get_feature_names_out()) == ["x0", "x2", "x3"]
    keeping = DeepImputer(**TINY, keep_empty_features=True).fit(with_empty)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = keeping.transform(with_empty)
    assert np.array_equal(kept[:, 1], np.zeros(40)) and np.array_equal(np.delete(kept, 1, axis=1), without)
    assert list(keeping.get_feature_names_out()) == ["x0", "x1", "x2", "x3"]
    with pytest.raises(ValueError, match=r"features \[1\] have no observed value"):
        DeepDensityEstimator(**TINY).fit(with_empty)


def test_float32_in_float32_out():
    x = holes().astype(np.float32)
    imputer = DeepImputer(**TINY).fit(x)
    out = imputer.transform(x)
    assert out.dtype == np.float32 and imputer.sample(x, 2).dtype == np.float32
    assert np.array_equal(out[~np.isnan(x)], x[~np.isnan(x)])
    as_float64 = DeepImputer(**TINY).fit(x.astype(np.float64)).transform(x.astype(np.float64))
    assert as_float64.dtype == np.float64 and np.array_equal(out, as_float64.astype(np.float32))


def test_values_beyond_float32_are_refused_in_one_line():
    """1e300 is finite for scikit-learn's own check, yet standardising it overflows: refused, naming the cell."""
    X = np.random.default_rng(0).normal(size=(20, 3))  # noqa: N806
    X[3, 1] = 1e300
    with pytest.raises(ValueError, match=r"X\[3, 1\] is 1e\+300: beyond"):
        DeepImputer(epochs=1).fit(X)
