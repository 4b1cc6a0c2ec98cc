"""Shared helpers of the training tests: tiny configurations and data, and exact comparison of states."""

from __future__ import annotations

from typing import Any

import torch

from deepem.data.base import DataSplits
from deepem.models.config import ModelConfig
from deepem.training.config import TrainConfig


def tiny_config(**changes: Any) -> TrainConfig:
    """IWAE, K=3, latent 4, one hidden layer of 16, on 100 points in batches of 20 (5 steps an epoch)."""
    fields: dict[str, Any] = dict(dataset="digits", method="iwae",
                                  model=ModelConfig(latent_dim=4, hidden=[16]), epochs=2, batch_size=20,
                                  lr=3e-3, seed=5, train_limit=100, valid_every=1, valid_particles=3,
                                  valid_limit=30, checkpoint_every_steps=2, keep_checkpoints=10)
    k = changes.pop("particles", 3)  # K is a method option
    fields.update(changes)
    fields["method_options"] = {"particles": k, **fields.get("method_options", {})}
    return TrainConfig(**fields)


def binary_data(n_train: int = 100, dim: int = 16, seed: int = 0) -> DataSplits:
    gen = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((n_train + 40, dim), 0.3), generator=gen)
    return DataSplits("binary-synthetic", x[:n_train], x[n_train:n_train + 20], x[n_train + 20:], "bernoulli")


def assert_trees_equal(a: Any, b: Any, path: str = "") -> None:
    """Bitwise equality of nested dicts / lists of tensors and numbers (torch.equal on tensors)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path} keys differ: {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_trees_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path} lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_trees_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"
