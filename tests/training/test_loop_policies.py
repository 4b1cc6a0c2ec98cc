"""The small objects the training loop consults: the non-finite policy decides (it never raises or
restores anything itself) and early stopping keeps the best bound and a copy of its parameters."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from deepem.training.early_stopping import EarlyStopping
from deepem.training.nonfinite import Action, NonFinitePolicy, carry_over
from deepem.training.state import TrainState

RUN = [Path("runs/a")]


def test_skip_counts_each_skip_and_stops_after_too_many_in_a_row():
    policy, state = NonFinitePolicy("skip", max_consecutive_skips=2), TrainState(epoch=1, batch=3, step=10)
    first = policy.on_step(state, "loss 'theta'", "here", RUN)
    assert first.action is Action.SKIP and state.skipped_steps == 1 and state.consecutive_skips == 1
    assert first.record == {"kind": "nonfinite", "action": "skip", "what": "loss 'theta'", "step": 10, "epoch": 1,
                            "batch": 3}
    assert "step skipped (1 so far)" in first.message
    assert policy.on_step(state, "x", "here", RUN).action is Action.SKIP
    third = policy.on_step(state, "x", "here", RUN)
    assert third.action is Action.STOP and "3 steps in a row" in third.message
    assert "max_consecutive_skips = 2" in third.message


def test_rollback_is_decided_until_the_budget_is_spent():
    policy = NonFinitePolicy("rollback", max_rollbacks=1)
    state = TrainState()
    decision = policy.on_step(state, "gradient", "epoch 0", RUN)
    assert decision == type(decision)(Action.ROLL_BACK, "non-finite gradient at epoch 0")
    restored = TrainState(skipped_steps=0)
    carry_over(restored, TrainState(lr_scale=1.0, rollbacks=0, skipped_steps=4))
    assert (restored.rollbacks, restored.lr_scale, restored.skipped_steps) == (1, 0.5, 4)
    spent = policy.on_checkpoint(restored, "refusing to write a checkpoint")
    assert spent.action is Action.STOP and "gave up after 1 rollbacks" in spent.message
    assert state.skipped_steps == 0  # deciding a rollback counts no skip


def test_stop_names_how_to_continue_one_run_or_each_seed():
    one = NonFinitePolicy("stop").on_step(TrainState(), "loss", "epoch 2", RUN)
    assert one.action is Action.STOP and one.message.endswith("deepem train --resume runs/a --nan-policy skip|rollback")
    group = NonFinitePolicy("stop").on_step(TrainState(), "loss", "epoch 2", [Path("g/seed-0"), Path("g/seed-1")])
    assert "continue each seed alone (deepem train --resume g/seed-0; deepem train --resume g/seed-1)" in group.message
    assert NonFinitePolicy("stop").on_checkpoint(TrainState(), "bad state").message == "bad state"


def test_early_stopping_keeps_the_best_bound_and_its_parameters():
    model, method = nn.Linear(2, 1), nn.Module()
    stopping, state = EarlyStopping(patience=2), TrainState()
    for epoch, bound in [(1, -5.0), (2, -3.0), (3, math.nan), (4, -3.5)]:
        state.epoch = epoch
        if epoch == 2:
            best_weight = model.weight.detach().clone()
        stopping.observe(state, bound, model, method)
        with torch.no_grad():
            model.weight.add_(1.0)  # training moves on
        assert stopping.spent(state) == (epoch == 4)
    assert (state.best_valid, state.best_epoch, state.stale_validations) == (-3.0, 2, 2)
    stopping.restore_best(model, method)
    assert torch.equal(model.weight, best_weight)


def test_without_patience_the_bound_is_tracked_but_nothing_is_copied_or_stopped():
    stopping, state = EarlyStopping(patience=0), TrainState()
    for bound in (-2.0, -4.0, -4.0, -4.0):
        stopping.observe(state, bound, nn.Linear(1, 1), nn.Module())
    assert stopping.best is None and not stopping.spent(state) and state.stale_validations == 3
