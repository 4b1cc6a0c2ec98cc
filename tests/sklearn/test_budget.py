"""The estimators' budget is in updates whatever the table's length, and the held-out-cells stopping rule
(off by default) stops a run whose held-out error rises."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.6")

from deepem.models.config import STOPPING_DEFAULTS, TABLE_DEFAULTS  # noqa: E402
from deepem.sklearn import DeepDensityEstimator, DeepImputer  # noqa: E402
from deepem.workflows.assembly import run_config  # noqa: E402

SMALL = {"hidden": (4,), "particles": 2, "eval_particles": 4, "random_state": 0}


def noise(n, d=4, seed=0):
    """Independent standard normal columns with 20 % of the cells missing: nothing to learn between columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[rng.random(x.shape) < 0.2] = np.nan
    return x


@pytest.mark.parametrize("estimator", [DeepImputer, DeepDensityEstimator])
def test_the_default_budget_is_in_updates_and_the_rule_takes_its_defaults_once_on(estimator):
    config = run_config(estimator().settings(0), table_columns=4)  # the settings as fit makes them
    assert config.max_iter == TABLE_DEFAULTS["max_iter"] and config.epochs == 10  # (epochs unused)
    assert config.max_epochs == TABLE_DEFAULTS["max_epochs"]  # the default budget's cap in epochs
    assert config.validation_fraction == STOPPING_DEFAULTS["validation_fraction"] == 0 == config.patience
    ruled = run_config(estimator(validation_fraction=0.2).settings(0), table_columns=4)
    assert ruled.validation_fraction == 0.2 and ruled.patience == STOPPING_DEFAULTS["patience"] > 0
    assert ruled.valid_every_steps == STOPPING_DEFAULTS["valid_every_steps"] > 0
    assert run_config(estimator(n_iter_no_change=3).settings(0), table_columns=4).patience == 0  # rule off


def test_without_the_rule_a_fit_takes_max_iter_updates_whatever_the_table_length():
    for rows in (40, 1000):  # 20 epochs of 2 batches; a third of one epoch of 16 batches
        imputer = DeepImputer(max_iter=40, validation_fraction=0.0, **SMALL).fit(noise(rows))
        assert imputer.n_iter_ == imputer.best_iter_ == imputer.model_.step == 40
        assert imputer.validation_scores_.shape == (0,)


def test_epochs_given_alone_is_the_budget():
    imputer = DeepImputer(epochs=3, validation_fraction=0.0, **SMALL).fit(noise(40))
    assert imputer.n_iter_ == 3 * 1  # 40 rows, batch 64 cut to 40: one update an epoch
    both = DeepImputer(epochs=3, max_iter=5, validation_fraction=0.0, **SMALL).fit(noise(40))
    assert both.n_iter_ == 5  # max_iter wins


def test_the_rule_stops_a_run_whose_held_out_error_rises():
    # independent noise columns: the best imputation is the column mean, which the model starts near; a wide
    # model with a large rate then fits the noise, and the held-out cells' RMSE rises
    x = noise(30)
    settings = {"max_iter": 200, "valid_every_steps": 10, "validation_fraction": 0.3, "n_iter_no_change": 3,
                "hidden": (32,), "particles": 5, "lr": 1e-2, "eval_particles": 4, "random_state": 0}
    ruled = DeepImputer(**settings).fit(x)
    scores = ruled.validation_scores_
    assert ruled.n_iter_ < 200 and ruled.n_iter_ == ruled.best_iter_ + 3 * 10
    assert len(scores) == ruled.n_iter_ // 10 and scores[ruled.best_iter_ // 10 - 1] == scores.min()
    assert (scores[ruled.best_iter_ // 10:] > scores.min()).all()  # three checks in a row worse than the best
    plain = DeepImputer(**{**settings, "validation_fraction": 0.0}).fit(x)
    assert plain.n_iter_ == 200


def test_the_default_budget_stops_at_max_epochs_on_a_small_table_and_a_typed_budget_is_uncapped():
    defaults = run_config(DeepImputer().settings(0), table_columns=4)
    cap = TABLE_DEFAULTS["max_epochs"]
    assert defaults.budget_updates(rows=128) == 2 * cap < TABLE_DEFAULTS["max_iter"]  # 2 batches of 64 a pass
    assert defaults.budget_updates(rows=150) == round(cap * 150 / 64)  # passes counted in rows, as measured
    assert defaults.budget_updates(rows=6400) == TABLE_DEFAULTS["max_iter"]
    for typed, updates in (({"max_iter": 5000}, 5000), ({"epochs": 700}, 1400)):  # a typed budget runs whole
        config = run_config(DeepImputer(**typed).settings(0), table_columns=4)
        assert config.max_epochs is None and config.budget_updates(rows=128) == updates
    capped = run_config(DeepImputer(max_iter=5000, max_epochs=3).settings(0), table_columns=4)
    assert capped.max_epochs == 3 and capped.budget_updates(rows=128) == 6


@pytest.mark.parametrize("rows, updates", [(40, 3), (1000, 47)])
def test_a_fit_stops_after_max_epochs_passes_whatever_max_iter_says(rows, updates):
    imputer = DeepImputer(max_epochs=3, validation_fraction=0.0, **SMALL).fit(noise(rows))
    # 40 rows: the batch is cut to 40, one update a pass; 1000 rows: 3 * 1000 / 64 = 46.9 batches of rows
    assert imputer.n_iter_ == imputer.model_.step == updates
    assert DeepImputer(max_epochs=3, max_iter=2, validation_fraction=0.0, **SMALL).fit(noise(rows)).n_iter_ == 2
