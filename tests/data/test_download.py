"""Downloads against a local HTTP server: checksum verification, atomic placement, caching, mirror
fallback, clear errors; and the IDX / chardata.mat parsing of the downloaded files."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from deepem.data import omniglot
from deepem.data.download import (
    ChecksumMismatchError,
    DownloadError,
    RemoteFile,
    download_file,
    ensure_file,
    mirror_urls,
)
from deepem.data.mnist import MNIST, load_idx_dataset, read_idx_images

N_TRAIN, N_TEST, N_VALID = 30, 12, 10


def write_idx_images(path: Path, images: np.ndarray) -> str:
    """Write uint8 images (N, rows, cols) as a gzipped IDX3 file; return its sha256."""
    n, rows, cols = images.shape
    payload = struct.pack(">IIII", 0x803, n, rows, cols) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload, mtime=0))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_mnist(local_server):
    """A tiny MNIST-format dataset served locally, and a spec pointing at it with the right checksums."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8)
    sha_train = write_idx_images(local_server.root / "train-images-idx3-ubyte.gz", train)
    sha_test = write_idx_images(local_server.root / "t10k-images-idx3-ubyte.gz", test)
    spec = dataclasses.replace(
        MNIST, mirrors=(local_server.url,), env_var="DEEPEM_TEST_UNUSED_URL",
        train_images=RemoteFile("train-images-idx3-ubyte.gz", sha_train),
        test_images=RemoteFile("t10k-images-idx3-ubyte.gz", sha_test),
        n_train_images=N_TRAIN, n_test_images=N_TEST, n_valid=N_VALID)
    return spec, train, test


def _dead_url() -> str:
    """A local port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_verifies_and_loads_through_the_real_parser(tiny_mnist, tmp_path, local_server):
    spec, train, test = tiny_mnist
    data_dir = tmp_path / "data"
    d = load_idx_dataset(spec, data_dir, download=True, seed=0)
    assert (data_dir / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert sorted(local_server.requests) == ["/t10k-images-idx3-ubyte.gz", "/train-images-idx3-ubyte.gz"]
    # train: the first n - n_valid training images as grey levels in [0, 1]
    expected = train[: N_TRAIN - N_VALID].reshape(-1, 784).astype(np.float32) / 255
    np.testing.assert_array_equal(d.train.numpy(), expected)
    assert d.train.dtype == torch.float32 and d.dynamic_binarization and d.image_shape == (28, 28)
    # valid / test: binarised once, fixed for a seed, different for another seed
    assert d.valid.shape == (N_VALID, 784) and d.test.shape == (N_TEST, 784)
    for x in (d.valid, d.test):
        assert torch.all((x == 0) | (x == 1))
    # pixels 0 and 255 binarise to 0 and 1 deterministically: the samples follow the right images
    grey_valid = train[N_TRAIN - N_VALID:].reshape(-1, 784)
    assert torch.all(d.valid[torch.from_numpy(grey_valid == 0)] == 0)
    assert torch.all(d.valid[torch.from_numpy(grey_valid == 255)] == 1)
    again = load_idx_dataset(spec, data_dir, download=True, seed=0)
    other = load_idx_dataset(spec, data_dir, download=True, seed=1)
    assert torch.equal(d.valid, again.valid) and torch.equal(d.test, again.test)
    assert not torch.equal(d.valid, other.valid)


def test_cached_file_is_not_downloaded_again(tiny_mnist, tmp_path, local_server):
    spec, _, _ = tiny_mnist
    load_idx_dataset(spec, tmp_path / "data", download=True, seed=0)
    n_requests = len(local_server.requests)
    d = load_idx_dataset(spec, tmp_path / "data", download=False, seed=0)
    assert len(local_server.requests) == n_requests == 2
    assert d.train.shape == (N_TRAIN - N_VALID, 784)


def test_wrong_checksum_raises_and_leaves_no_file(tiny_mnist, tmp_path):
    spec, _, _ = tiny_mnist
    wrong = "0" * 64
    bad = dataclasses.replace(spec, train_images=RemoteFile("train-images-idx3-ubyte.gz", wrong))
    cache = tmp_path / "data" / "mnist"
    with pytest.raises(ChecksumMismatchError) as info:
        load_idx_dataset(bad, tmp_path / "data", download=True, seed=0)
    message = str(info.value)
    assert wrong in message and spec.train_images.sha256 in message  # expected and got
    assert "by hand" in message
    assert not cache.exists()  # neither the file nor a temporary .part file, nor the folder made for them


def test_cached_file_with_wrong_checksum_is_refused(tiny_mnist, tmp_path):
    spec, _, _ = tiny_mnist
    cache = tmp_path / "data" / "mnist"
    cache.mkdir(parents=True)
    (cache / "train-images-idx3-ubyte.gz").write_bytes(b"not mnist")
    with pytest.raises(ChecksumMismatchError, match="Delete it"):
        load_idx_dataset(spec, tmp_path / "data", download=True, seed=0)


def test_dead_url_and_missing_file_give_clear_errors(tmp_path, local_server):
    remote = RemoteFile("thing.bin", "0" * 64)
    dead = _dead_url() + "thing.bin"
    missing = local_server.url + "thing.bin"  # server is up, file is not there: HTTP 404
    with pytest.raises(DownloadError) as info:
        download_file(remote, tmp_path / "cache", [dead, missing], "demo")
    message = str(info.value)
    assert not isinstance(info.value, ChecksumMismatchError)
    assert dead in message and missing in message and "404" in message
    assert str(tmp_path / "cache" / "thing.bin") in message  # where to put it by hand
    assert not (tmp_path / "cache").exists()  # the folder this attempt created is gone again


def test_falls_back_to_the_next_mirror(tmp_path, local_server):
    payload = b"deepem mirror test\n" * 100
    (local_server.root / "f.bin").write_bytes(payload)
    remote = RemoteFile("f.bin", hashlib.sha256(payload).hexdigest())
    urls = mirror_urls("f.bin", [_dead_url(), local_server.url])
    path = download_file(remote, tmp_path / "cache", urls, "demo")
    assert path.read_bytes() == payload
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["f.bin"]


def test_env_var_base_url_is_tried_first(monkeypatch):
    monkeypatch.setenv("DEEPEM_DEMO_URL", "http://mirror.example/data")
    urls = mirror_urls("a.gz", ["https://one.example/x/", "https://two.example/y/a.gz"], "DEEPEM_DEMO_URL")
    assert urls == ["http://mirror.example/data/a.gz", "https://one.example/x/a.gz", "https://two.example/y/a.gz"]
    monkeypatch.delenv("DEEPEM_DEMO_URL")
    assert mirror_urls("a.gz", ["https://one.example/x"], "DEEPEM_DEMO_URL") == ["https://one.example/x/a.gz"]


def test_unpinned_checksum_warns_with_the_computed_hash(tmp_path, local_server):
    payload = b"unpinned"
    (local_server.root / "u.bin").write_bytes(payload)
    with pytest.warns(UserWarning, match=hashlib.sha256(payload).hexdigest()):
        path = ensure_file(RemoteFile("u.bin", None), tmp_path / "c", [local_server.url + "u.bin"], "demo",
                           download=True)
    assert path.read_bytes() == payload


def test_idx_parser_rejects_bad_files(tmp_path):
    good = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx_images(tmp_path / "ok.gz", good)
    np.testing.assert_array_equal(read_idx_images(tmp_path / "ok.gz"), good)
    raw = gzip.decompress((tmp_path / "ok.gz").read_bytes())
    (tmp_path / "plain").write_bytes(raw)  # uncompressed IDX is read too
    np.testing.assert_array_equal(read_idx_images(tmp_path / "plain"), good)
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_idx_images(tmp_path / "short")
    (tmp_path / "labels").write_bytes(struct.pack(">II", 0x801, 2) + b"\x00\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        read_idx_images(tmp_path / "labels")


def test_omniglot_orientation_and_iwae_split(tmp_path, monkeypatch):
    """A tiny chardata.mat (column-major pixels, as in the real file) loads upright, with IWAE's split:
    RandomState(123) shuffle of the training images, last n_valid to validation."""
    savemat = pytest.importorskip("scipy.io").savemat
    n_train, n_test, n_valid = 12, 4, 3
    monkeypatch.setattr(omniglot, "OMNIGLOT_SIZES", (n_train, n_test))
    monkeypatch.setattr(omniglot, "OMNIGLOT_N_VALID", n_valid)
    rng = np.random.default_rng(1)
    upright = rng.random((n_train + n_test, 28, 28))
    upright[:, 0, :] = 0.0  # top row blank, left column full: orientation is visible
    upright[:, :, 0] = 1.0
    columns = np.stack([img.flatten(order="F") for img in upright], axis=1)  # (784, N) column-major
    (tmp_path / "omniglot").mkdir()
    savemat(tmp_path / "omniglot" / "chardata.mat",
            {"data": columns[:, :n_train], "testdata": columns[:, n_train:]})
    d = omniglot.load_omniglot(tmp_path, download=False, seed=0)
    flat = upright.reshape(-1, 784).astype(np.float32)
    shuffled = flat[:n_train][np.random.RandomState(123).permutation(n_train)]
    np.testing.assert_array_equal(d.train.numpy(), shuffled[:-n_valid])
    assert d.dynamic_binarization and d.valid.shape == (n_valid, 784) and d.test.shape == (n_test, 784)
    images = d.test.numpy().reshape(-1, 28, 28)
    assert np.all(images[:, 0, 1:] == 0) and np.all(images[:, :, 0] == 1)


def test_failed_download_keeps_folders_that_were_there(tmp_path):
    """Only the folders a failed attempt created are removed; existing ones and their files stay."""
    cache = tmp_path / "data" / "mnist"
    cache.mkdir(parents=True)
    (cache / "keep.txt").write_text("mine")
    with pytest.raises(DownloadError):
        download_file(RemoteFile("thing.bin", "0" * 64), cache / "sub", [_dead_url() + "thing.bin"], "demo")
    assert not (cache / "sub").exists()
    assert sorted(p.name for p in cache.iterdir()) == ["keep.txt"]
