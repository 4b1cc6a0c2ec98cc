"""The stopping rule: a budget in updates (max_iter), validation every N updates (valid_every_steps), the
held-out-cells validator (validation_fraction: observed cells hidden from training by a mask of the seed
alone, scored by the RMSE of their imputation), and tol; the best parameters kept."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from training_helpers import assert_trees_equal, binary_data, tiny_config

from deepem.data.base import DataSplits
from deepem.evaluation.own_rows import impute_rows
from deepem.training.config import ConfigError
from deepem.training.validation import HELD_OUT_ESTIMATOR, hold_out_cells
from deepem.training.vectorisable import VectorisationError, check_vectorisable
from deepem.workflows.assembly import assemble, build_trainer


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def gaussian_table(n: int = 100, d: int = 4, seed: int = 0) -> DataSplits:
    """Correlated standardised-looking columns, about a quarter of the cells missing (NaN)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=gen) @ torch.randn(1, d, generator=gen) + 0.3 * torch.randn(n, d, generator=gen)
    mask = torch.rand(n, d, generator=gen) > 0.25
    mask[:, 0] |= ~mask.any(dim=1)  # every row keeps an observed cell
    x = torch.where(mask, x, torch.full_like(x, math.nan))
    empty, no = torch.zeros(0, d), torch.zeros(0, d, dtype=torch.bool)
    return DataSplits("table", x, empty, empty, "gaussian", train_mask=mask, valid_mask=no, test_mask=no)


def test_held_out_cells_are_a_share_of_the_observed_cells_drawn_by_the_seed_alone():
    mask = torch.rand(50, 6, generator=torch.Generator().manual_seed(1)) > 0.3
    train_mask, held_out = hold_out_cells(mask, 0.2, seed=7)
    assert int(held_out.sum()) == round(0.2 * int(mask.sum()))
    assert not (held_out & ~mask).any()  # only observed cells are held out
    assert torch.equal(train_mask, mask & ~held_out)
    again_mask, again = hold_out_cells(mask.clone(), 0.2, seed=7)
    assert torch.equal(again, held_out) and torch.equal(again_mask, train_mask)
    assert not torch.equal(hold_out_cells(mask, 0.2, seed=8)[1], held_out)
    with pytest.raises(ValueError):
        hold_out_cells(mask, 1.0, seed=7)


def test_a_long_table_holds_out_cells_within_max_rows_rows_only():
    mask = torch.rand(500, 4, generator=torch.Generator().manual_seed(2)) > 0.2
    train_mask, held_out = hold_out_cells(mask, 0.5, seed=3, max_rows=40)
    rows = held_out.any(dim=1)
    assert 0 < int(rows.sum()) <= 40 and torch.equal(train_mask, mask & ~held_out)
    assert int(held_out.sum()) <= 0.5 * 40 * 4  # half the observed cells of 40 rows at most
    assert torch.equal(hold_out_cells(mask, 0.5, seed=3, max_rows=40)[1], held_out)
    assert torch.equal(hold_out_cells(mask[:40], 0.5, seed=3, max_rows=40)[1],
                       hold_out_cells(mask[:40], 0.5, seed=3)[1])  # a table within max_rows: the plain rule


def test_the_validator_is_minus_the_rmse_of_the_imputation_of_the_hidden_cells_which_training_never_sees():
    data = gaussian_table()
    config = tiny_config(dataset="table", method="miwae", train_limit=None, valid_every=0, valid_every_steps=5,
                         validation_fraction=0.25, valid_particles=7, model=tiny_config().model)
    a = assemble(config, data)
    expected_mask, held_out = hold_out_cells(data.train_mask, 0.25, config.seed, max_rows=config.valid_limit)
    assert torch.equal(a.train_mask, expected_mask)  # what the trainer trains on hides the held-out cells
    assert int(held_out.any(dim=1).sum()) <= config.valid_limit == 30
    result = a.validate(a.model)
    imputed = impute_rows(a.model, data.train, expected_mask, particles=7, seed=config.seed).imputed
    rmse = float(((imputed.double() - data.train.double())[held_out] ** 2).mean().sqrt())
    assert result.estimator == HELD_OUT_ESTIMATOR and result.mean == pytest.approx(-rmse, rel=1e-12)
    assert result.stderr > 0


def test_the_held_out_values_do_not_reach_the_initial_model():
    """The output bias starts at the mean of the cells training sees: changing the held-out cells' values
    leaves the assembled model as it was (with them in the mean it moved)."""
    data = gaussian_table()
    config = tiny_config(dataset="table", method="miwae", train_limit=None, valid_every=0, valid_every_steps=5,
                         validation_fraction=0.25, valid_particles=7, model=tiny_config().model)
    _, held_out = hold_out_cells(data.train_mask, 0.25, config.seed, max_rows=config.valid_limit)
    shifted = DataSplits("table", torch.where(held_out, data.train + 100.0, data.train), data.valid, data.test,
                         "gaussian", train_mask=data.train_mask, valid_mask=data.valid_mask, test_mask=data.test_mask)
    assert_trees_equal(params(assemble(config, data).model), params(assemble(config, shifted).model))


def make_trainer(run_dir, curve: dict[int, float], snapshots: dict[int, dict], **changes):
    """A tiny IWAE run (5 updates an epoch) whose validator reads `curve` at the update just done and keeps
    the parameters it saw."""
    config = tiny_config(**{"epochs": 1, "valid_every": 0, "checkpoint_every_steps": 0, **changes})
    trainer = build_trainer(config, run_dir, binary_data(), log=lambda s: None, progress=False)

    def validate(model):
        snapshots[trainer.state.step] = params(model)
        return SimpleNamespace(mean=curve[trainer.state.step], stderr=0.0, estimator="fake")

    trainer.validate = validate
    return trainer


def test_a_plateau_stops_the_run_within_an_epoch_with_the_best_checks_parameters(tmp_path):
    snapshots: dict[int, dict] = {}
    # every 3 updates; the best at update 9, then a tie: no new best; patience 1 stops at update 12
    curve = {3: -10.0, 6: -8.0, 9: -7.0, 12: -7.0, 15: -1.0}
    trainer = make_trainer(tmp_path / "run", curve, snapshots, max_iter=40, valid_every_steps=3, patience=1)
    trainer.start()
    summary = trainer.fit()
    assert (summary["steps"], trainer.state.epoch, trainer.state.batch) == (12, 2, 2)  # mid-epoch
    assert summary["stopped_early"] and summary["best_valid"] == -7.0 and summary["best_step"] == 9
    assert sorted(snapshots) == [3, 6, 9, 12]
    assert_trees_equal(params(trainer.model), snapshots[9])
    assert any(not torch.equal(snapshots[9][k], snapshots[12][k]) for k in snapshots[9])


def test_tol_counts_small_gains_as_no_change():
    curve = {3: -10.0, 6: -9.9, 9: -9.8, 12: -9.7, 15: -5.0, 18: -5.0}
    with_tol: dict[int, dict] = {}
    trainer = make_trainer(None, curve, with_tol, max_iter=18, valid_every_steps=3, patience=2, tol=0.5)
    trainer.start()
    assert trainer.fit()["steps"] == 9 and trainer.state.best_valid == -10.0  # checks at 6 and 9: stale
    assert_trees_equal(params(trainer.model), with_tol[3])
    without: dict[int, dict] = {}
    trainer = make_trainer(None, curve, without, max_iter=18, valid_every_steps=3, patience=2)
    trainer.start()
    assert trainer.fit()["steps"] == 18 and trainer.state.best_valid == -5.0


def test_the_budget_is_in_updates_and_a_run_stopped_within_an_epoch_resumes_bit_for_bit(tmp_path):
    whole = build_trainer(tiny_config(epochs=1, max_iter=12, valid_every=0), tmp_path / "whole", binary_data(),
                          log=lambda s: None, progress=False)
    whole.start()
    assert whole.fit()["steps"] == 12  # 2.4 epochs of 5 updates, whatever --epochs says
    part = build_trainer(tiny_config(epochs=1, max_iter=7, valid_every=0), tmp_path / "part", binary_data(),
                         log=lambda s: None, progress=False)
    part.start()
    assert part.fit()["steps"] == 7 and (part.state.epoch, part.state.batch) == (1, 2)
    resumed = build_trainer(tiny_config(epochs=1, max_iter=12, valid_every=0), tmp_path / "part", binary_data(),
                            log=lambda s: None, progress=False)
    assert resumed.resume()
    assert resumed.fit()["steps"] == 12
    assert_trees_equal(params(resumed.model), params(whole.model))


def test_held_out_cells_need_validation_and_a_fraction_below_one():
    with pytest.raises(ConfigError, match="validation_fraction"):
        tiny_config(valid_every=0, validation_fraction=0.1).validate()
    with pytest.raises(ConfigError, match="validation_fraction"):
        tiny_config(validation_fraction=1.0).validate()


def test_vectorised_seeds_refuse_held_out_cells():
    with pytest.raises(VectorisationError, match="held-out cells"):
        check_vectorisable(tiny_config(valid_every=0, valid_every_steps=5, validation_fraction=0.1))
