"""A Trainer without a run folder (run_dir=None, what the scikit-learn estimators use): it writes nothing,
and it trains exactly as a run with a folder does, the non-finite rollback included (the newest checkpoint
is kept in memory)."""

from __future__ import annotations

import torch
from training_helpers import binary_data, tiny_config

from deepem.workflows.assembly import build_trainer

POISON_STEP = 3  # (tiny_config checkpoints every 2 steps: the rollback goes back to step 2)


def poisoned(seen: list[int]):
    def hook(step: int, x: torch.Tensor) -> torch.Tensor:
        seen.append(step)
        if step == POISON_STEP and seen.count(step) == 1:
            x = x.clone()
            x[1, 2] = float("nan")
        return x
    return hook


def test_in_memory_training_writes_nothing_and_rolls_back_as_a_run_folder_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcomes = {}
    for folder in (tmp_path / "run", None):
        seen: list[int] = []
        trainer = build_trainer(tiny_config(nan_policy="rollback"), folder, data=binary_data(), log=lambda _: None,
                                progress=False, batch_hook=poisoned(seen))
        trainer.start()
        summary = trainer.fit()
        outcomes[folder] = (seen, summary["rollbacks"], summary["lr_scale"], trainer.model.state_dict())
    (seen, rollbacks, scale, on_disk), (seen_mem, rollbacks_mem, scale_mem, in_memory) = outcomes.values()
    assert seen[:6] == [0, 1, 2, 3, 2, 3] and seen_mem == seen  # went back to the step-2 checkpoint
    assert rollbacks == rollbacks_mem == 1 and scale == scale_mem == 0.5
    assert all(torch.equal(on_disk[k], in_memory[k]) for k in on_disk)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the in-memory run wrote nothing


def test_the_kept_checkpoint_is_a_copy_that_shares_nothing_mutable():
    from collections import OrderedDict

    from deepem.training.trainer import copied
    weights = OrderedDict(w=torch.ones(3))
    weights._metadata = {"": {"version": 1}}
    state = {"model": weights, "optimizers": {"theta": {"state": {0: {"step": torch.tensor(4.0)}},
                                                         "param_groups": [{"lr": 0.1, "params": [0]}]}},
             "rng": {"python": {"internal": [1, 2, 3], "gauss_next": None}}, "format": 2}
    kept = copied(state)
    state["model"]["w"].add_(1)
    state["optimizers"]["theta"]["state"][0]["step"].add_(1)
    state["optimizers"]["theta"]["param_groups"][0]["params"].append(1)
    state["rng"]["python"]["internal"][0] = 9
    assert torch.equal(kept["model"]["w"], torch.ones(3)) and kept["model"]._metadata == {"": {"version": 1}}
    assert type(kept["model"]) is OrderedDict
    assert kept["optimizers"]["theta"]["state"][0]["step"].item() == 4.0
    assert kept["optimizers"]["theta"]["param_groups"][0]["params"] == [0]
    assert kept["rng"]["python"]["internal"] == [1, 2, 3] and kept["format"] == 2


def test_an_in_memory_checkpoint_refuses_a_non_finite_state_and_keeps_a_large_finite_one():
    import pytest
    from training_helpers import tiny_config

    from deepem.training.guards import NonFiniteError
    trainer = build_trainer(tiny_config(), None, data=binary_data(), log=lambda _: None, progress=False)
    trainer.start()
    weight = next(trainer.model.parameters())
    with torch.no_grad():  # finite, but the sum overflows float32: the exact check must let it through
        weight.fill_(3e38)
    trainer.save()
    with torch.no_grad():
        weight[0].fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="refusing to write a checkpoint"):
        trainer.save()
