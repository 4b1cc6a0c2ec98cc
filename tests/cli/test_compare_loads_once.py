"""`compare` loads each trained run once: its test and train evaluations and its sample grid use the one
loaded model (the checkpoint files are read once per run, not once per use)."""

from __future__ import annotations

import json

import torch

import deepem.workflows.loading as loading
from deepem.models import ModelConfig
from deepem.training.config import TrainConfig
from deepem.workflows.compare import compare


def test_compare_reads_each_checkpoint_once(tmp_path, monkeypatch):
    base = TrainConfig(dataset="digits", epochs=1, batch_size=50, seed=0, train_limit=100, valid_particles=5,
                       model=ModelConfig(latent_dim=2, hidden=[8]))
    runs_loaded, files_read = [], []
    latest_good, torch_load = loading.load_latest_good, torch.load

    def counted_latest_good(folder, *args, **kwargs):
        runs_loaded.append(str(folder))
        return latest_good(folder, *args, **kwargs)

    def counted_torch_load(source, *args, **kwargs):
        files_read.append(str(source))
        return torch_load(source, *args, **kwargs)

    monkeypatch.setattr(loading, "load_latest_good", counted_latest_good)
    monkeypatch.setattr(torch, "load", counted_torch_load)
    rows = compare(base, ["vae", "iwae:k=2"], tmp_path / "cmp", eval_particles=3, eval_limit=10,
                   train_eval_limit=10, progress=False, log=lambda _: None)
    assert [r["method"] for r in rows] == ["vae", "iwae-k2"]
    assert sorted(runs_loaded) == sorted(str(tmp_path / "cmp" / m / "checkpoints") for m in ("vae", "iwae-k2"))
    assert len(files_read) == 2  # a fresh training reads no checkpoint; each run's newest is read once
    for method in ("vae", "iwae-k2"):  # both splits evaluated, from the one load
        names = sorted(p.name for p in (tmp_path / "cmp" / method / "evaluations").glob("*.json"))
        assert [n.split("-s0-")[0] for n in names] == ["iw-k3-test-n10", "iw-k3-train-n10"]
        assert json.loads((tmp_path / "cmp" / method / "evaluations" / names[0]).read_text())["particles"] == 3
