"""The verified benchmark files in the shared data directory load with the documented shapes, values and
pixel means (numbers from shared/data/README.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepem.data import load_dataset
from deepem.data.uci import UCI_FILES


def _check_binary_images(d, sizes, dim=784):
    for split, n in zip(("train", "valid", "test"), sizes, strict=True):
        x = d.split(split)
        assert x.dtype == torch.float32
        assert x.shape == (n, dim)
        assert torch.all((x == 0) | (x == 1)), f"{split} is not binary"
    assert d.likelihood == "bernoulli"
    assert d.image_shape == (28, 28)
    assert not d.dynamic_binarization


def test_binarized_mnist_matches_readme(shared_data_dir):
    d = load_dataset("binarized-mnist", data_dir=shared_data_dir, download=False)
    _check_binary_images(d, (50000, 10000, 10000))
    # README: fraction of ones per split (6 decimals).
    for split, mean in (("train", 0.130562), ("valid", 0.131127), ("test", 0.132512)):
        assert d.split(split).double().mean().item() == pytest.approx(mean, abs=1e-6)
    # no blank images (README: at least 17 ones per image)
    assert d.train.sum(1).min().item() >= 17


def test_caltech_is_object_one_and_upright(shared_data_dir):
    d = load_dataset("caltech101", data_dir=shared_data_dir, download=False)
    _check_binary_images(d, (4100, 2264, 2307))
    for split, mean in (("train", 0.448945), ("valid", 0.464041), ("test", 0.460985)):
        assert d.split(split).double().mean().item() == pytest.approx(mean, abs=1e-6)
    # The stored pixels are background = 1 in column-major order: image k of the loader, reshaped
    # row-major, must be the transpose of the stored image reshaped row-major, with 0 and 1 swapped.
    with np.load(shared_data_dir / "caltech101_silhouettes_28.npz") as f:
        raw = np.unpackbits(f["test"][:5], axis=1).reshape(-1, 28, 28)
    got = d.test[:5].numpy().reshape(-1, 28, 28)
    np.testing.assert_array_equal(got, 1 - raw.transpose(0, 2, 1))


@pytest.mark.parametrize("name", list(UCI_FILES))
def test_uci_standardised_with_training_statistics(shared_data_dir, name):
    d = load_dataset(name, data_dir=shared_data_dir, download=False)
    raw = np.loadtxt(shared_data_dir / "uci" / UCI_FILES[name], delimiter=",", skiprows=1)[:, :-1]
    n, dim = raw.shape
    assert d.likelihood == "gaussian" and d.image_shape is None
    assert d.train.dtype == torch.float32 and d.data_dim == dim
    sizes = (d.train.shape[0], d.valid.shape[0], d.test.shape[0])
    assert sum(sizes) == n and sizes[1] == sizes[2] == n // 10

    train = d.train.double().numpy()
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-5)

    # All splits share one affine map per column (the training one): sorted standardised values of the
    # three splits together are an exact affine image of the sorted raw column. Since the train split
    # has mean 0 / std 1 in standardised units, the map uses the training mean and std.
    z = np.concatenate([d.train.numpy(), d.valid.numpy(), d.test.numpy()]).astype(np.float64)
    for j in range(dim):
        zs, xs = np.sort(z[:, j]), np.sort(raw[:, j])
        scale, shift = np.polyfit(zs, xs, 1)
        assert scale > 0
        np.testing.assert_allclose(zs * scale + shift, xs, atol=1e-5 * max(1.0, np.abs(xs).max()))
    # ... and valid/test were not standardised with their own statistics
    assert np.abs(d.valid.double().numpy().mean(0)).max() > 1e-3
    assert np.abs(d.test.double().numpy().std(0) - 1).max() > 1e-3


def test_uci_split_is_deterministic_and_ignores_seed(shared_data_dir):
    a = load_dataset("wine-red", data_dir=shared_data_dir, seed=0)
    b = load_dataset("wine-red", data_dir=shared_data_dir, seed=7)
    for split in ("train", "valid", "test"):
        assert torch.equal(a.split(split), b.split(split))
