"""Registry, the bundled digits dataset, data-directory resolution, missing-file errors, binarisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from deepem.data import DATASETS, DatasetNotFoundError, binarize, load_dataset, resolve_data_dir


def test_digits_shapes_binary_and_deterministic(tmp_path):
    d = load_dataset("digits", data_dir=tmp_path)  # needs no file
    assert (d.train.shape, d.valid.shape, d.test.shape) == ((1257, 64), (270, 64), (270, 64))
    assert d.train.dtype == torch.float32
    assert d.likelihood == "bernoulli" and d.image_shape == (8, 8) and not d.dynamic_binarization
    for x in (d.train, d.valid, d.test):
        assert torch.all((x == 0) | (x == 1))
    # The split does not depend on the user seed: it is part of the dataset.
    again = load_dataset("digits", seed=123)
    for split in ("train", "valid", "test"):
        assert torch.equal(d.split(split), again.split(split))


def test_digits_is_a_partition_of_thresholded_sklearn_digits():
    d = load_dataset("digits")
    expected = (load_digits().data / 16.0 > 0.5).astype(np.float32)
    got = torch.cat([d.train, d.valid, d.test]).numpy()
    # same multiset of rows: sort both lexicographically
    np.testing.assert_array_equal(got[np.lexsort(got.T)], expected[np.lexsort(expected.T)])
    # a permutation, not the original order (the split is shuffled)
    assert not np.array_equal(got, expected)


def test_unknown_dataset_lists_available_names():
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10")
    for name in DATASETS:
        assert name in str(info.value)


def test_registry_entries_have_descriptions_and_names_are_normalised():
    assert {"digits", "binarized-mnist", "caltech101", "mnist", "fashion-mnist", "omniglot", "banknote",
            "breast-cancer", "wine-red", "wine-white"} <= set(DATASETS)
    assert all(info.description for info in DATASETS.values())
    assert load_dataset("Digits").train.shape == (1257, 64)


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPEM_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("DEEPEM_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(None) == tmp_path / "home" / ".cache" / "deepem"


@pytest.mark.parametrize("name, expected_paths", [
    ("binarized-mnist", ["binarized_mnist.npz", "binarized_mnist_train.amat"]),
    ("caltech101", ["caltech101_silhouettes_28.npz"]),
    ("wine-red", ["uci/winequality_red.csv"]),
    ("mnist", ["mnist/train-images-idx3-ubyte.gz"]),
    ("fashion-mnist", ["fashion-mnist/train-images-idx3-ubyte.gz"]),
    ("omniglot", ["omniglot/chardata.mat", "chardata.mat"]),
])
def test_missing_file_error_names_paths_and_remedy(tmp_path, monkeypatch, name, expected_paths):
    monkeypatch.setenv("DEEPEM_DATA", str(tmp_path))  # resolved from the environment
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for rel in expected_paths:
        assert str(tmp_path / Path(rel)) in message
    assert "--data-dir" in message and "DEEPEM_DATA" in message


def test_binarize_seeded_is_deterministic_and_unbiased():
    p = torch.tensor([0.0, 0.3, 1.0]).expand(20000, 3)
    a = binarize(p, torch.Generator().manual_seed(5))
    b = binarize(p, torch.Generator().manual_seed(5))
    c = binarize(p, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.all((a == 0) | (a == 1))
    assert a[:, 0].sum() == 0 and a[:, 2].sum() == 20000
    # mean of 20000 Bernoulli(0.3) draws: standard error 0.0032, so 0.015 is a 4.6-sigma band
    assert abs(a[:, 1].mean().item() - 0.3) < 0.015


@pytest.mark.parametrize("fmt", ["text", "matlab"])
def test_binarized_mnist_from_amat_files(tmp_path, monkeypatch, fmt):
    """The three original .amat files (0/1 text), or the MATLAB files some copies ship under that name."""
    from deepem.data import images

    monkeypatch.setattr(images, "BINARIZED_MNIST_SIZES", (3, 2, 2))
    rng = np.random.default_rng(0)
    splits = {s: rng.integers(0, 2, size=(n, 784), dtype=np.uint8) for s, n in (("train", 3), ("valid", 2),
                                                                                ("test", 2))}
    for s, x in splits.items():
        path = tmp_path / f"binarized_mnist_{s}.amat"
        if fmt == "text":
            np.savetxt(path, x, fmt="%d")
        else:
            pytest.importorskip("scipy.io").savemat(path, {"X": x}, format="5")
    d = load_dataset("binarized-mnist", data_dir=tmp_path)
    for s, x in splits.items():
        np.testing.assert_array_equal(d.split(s).numpy(), x.astype(np.float32))


def test_masked_splits_mean_over_observed_entries_only() -> None:
    import torch

    from deepem.data.base import DataSplits

    x = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, float("nan")]])
    mask = ~torch.isnan(x)
    data = DataSplits("t", x, x[:1], x[:1], "bernoulli", train_mask=mask)
    assert torch.allclose(data.train_mean(), torch.tensor([2 / 3, 1.0]))
    assert data.mask("train") is mask and data.mask("test") is None


@pytest.mark.parametrize("name", ["digits", "binarized-mnist", "caltech101", "banknote", "breast-cancer",
                                  "wine-red", "wine-white"])
def test_registry_summary_matches_the_data(name, shared_data_dir):
    """`deepem list` prints these facts: the dimension and split sizes must be those of the loaded data."""
    info = DATASETS[name]
    d = load_dataset(name, data_dir=shared_data_dir, download=False)
    assert d.data_dim == info.dim
    assert (d.train.shape[0], d.valid.shape[0], d.test.shape[0]) == info.splits
    summary = info.summary()
    assert f"{info.dim}-dim" in summary and "/".join(map(str, info.splits)) in summary
    assert "download" in info.source  # says whether a download is needed
