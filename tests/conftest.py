"""Shared fixtures: a small linear-Gaussian model whose log p(x) and posterior are exact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deepem.models.linear_gaussian import linear_gaussian_model

torch.set_num_threads(1)  # the CI machine has 2 cores; deterministic and predictable


@pytest.fixture
def shared_data_dir() -> Path:
    """Where the verified benchmark data lie (CI: ../shared/data beside the clone)."""
    path = Path(os.environ.get("DEEPEM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (path / "binarized_mnist.npz").exists():
        pytest.skip(f"benchmark data not found in {path}; set DEEPEM_DATA")
    return path


@pytest.fixture
def lg_model():
    """p(z)=N(0,I_2), p(x|z)=N(Wz+b, 0.5^2 I_5) in float64, with 4 data points drawn from it."""
    gen = torch.Generator().manual_seed(1234)
    model = linear_gaussian_model(data_dim=5, latent_dim=2, noise_std=0.5, generator=gen)
    with torch.no_grad():
        z = torch.randn(4, 2, generator=gen, dtype=torch.float64)
        x = model.decoder(z) + 0.5 * torch.randn(4, 5, generator=gen, dtype=torch.float64)
    return model, x
