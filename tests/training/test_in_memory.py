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
