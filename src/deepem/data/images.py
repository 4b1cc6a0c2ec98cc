"""Binary image datasets shipped as files or with scikit-learn: 8x8 digits, static binarized MNIST,
Caltech 101 Silhouettes."""

from __future__ import annotations

import pickle
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deepem.data.base import DataSplits
from deepem.data.paths import DatasetNotFoundError, first_existing, missing_data_message
from deepem.errors import DamagedFileError, damaged_file_message

# The digits split must not move when a user changes the training seed: it is part of the dataset.
DIGITS_SPLIT_SEED = 20240601
DIGITS_SPLIT_SIZES = (1257, 270, 270)
DIGITS_THRESHOLD = 0.5

BINARIZED_MNIST_NPZ = "binarized_mnist.npz"
BINARIZED_MNIST_AMAT = tuple(f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test"))
BINARIZED_MNIST_SIZES = (50000, 10000, 10000)
CALTECH_NPZ = "caltech101_silhouettes_28.npz"
CALTECH_SIZES = (4100, 2264, 2307)
# sha256 of the verified files of the benchmark data set-up (its README lists them); named when a file is damaged.
BINARIZED_MNIST_SHA256 = "50de2c8299a5a297789293ab2c30f6fc3cb8c359a15e5e88d5501aa18ebb8fa5"
CALTECH_SHA256 = "bc7e0e70ce91fe0514a1215268c71f0b7964eb00e28dc61d60018e1413fa8353"

# What np.load and the lazy per-key decompression raise on an empty, truncated or corrupted .npz file.
NPZ_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, struct.error, pickle.UnpicklingError)


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """float32 torch tensor of an (N, D) array."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def check_split_sizes(dataset: str, path: Path, arrays: tuple[np.ndarray, ...], expected: tuple[int, ...]):
    """Refuse a file whose split sizes or pixel count differ from the published ones (a truncated or
    wrong file would otherwise give silently wrong benchmark numbers)."""
    got = tuple(a.shape[0] for a in arrays)
    if got != expected:
        raise ValueError(f"{dataset}: {path} has split sizes {got}, expected {expected}; the file is not the "
                         "standard one (re-download or replace it)")
    for a in arrays:
        if a.ndim != 2 or a.shape[1] != 784:
            raise ValueError(f"{dataset}: {path} holds arrays of shape {a.shape}, expected (N, 784)")


def read_npz(dataset: str, path: Path, keys: Sequence[str], sha256: str | None = None) -> dict[str, np.ndarray]:
    """The arrays `keys` of an .npz file; a damaged file raises DamagedFileError naming it and its checksum.
    Every key is read inside the try: np.load only reads the zip directory, a corrupt member fails later."""
    try:
        with np.load(path) as d:
            return {k: d[k] for k in keys}
    except NPZ_DAMAGE as err:
        reason = f"{type(err).__name__}: {err}"
        raise DamagedFileError(damaged_file_message(dataset, path, reason, sha256)) from None


def load_digits_binary() -> DataSplits:
    """scikit-learn's bundled 8x8 digits (1797 images, grey levels 0..16), divided by 16 and thresholded at
    0.5 (pixel > 0.5 -> 1), split 1257/270/270 by a permutation with a fixed seed. Needs no download."""
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64) / 16.0
    x = (x > DIGITS_THRESHOLD).astype(np.float32)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(x.shape[0])
    n_train, n_valid, _ = DIGITS_SPLIT_SIZES
    train, valid, test = np.split(x[order], [n_train, n_train + n_valid])
    return DataSplits("digits", to_tensor(train), to_tensor(valid), to_tensor(test),
                      likelihood="bernoulli", image_shape=(8, 8))


def _read_amat(path: Path) -> np.ndarray:
    """One split of Larochelle & Murray's binarized MNIST: whitespace-separated 0/1 text, one image a row.
    Some public copies with the .amat name are in fact MATLAB v5 files with one key `X`; read those too."""
    with path.open("rb") as f:
        head = f.read(6)
    if head == b"MATLAB":
        try:
            from scipy.io import loadmat
        except ImportError as err:  # scipy is only a test extra
            raise ImportError(f"{path} is a MATLAB file; reading it needs scipy (pip install scipy)") from err
        return np.asarray(loadmat(str(path))["X"], dtype=np.uint8)
    return np.loadtxt(path, dtype=np.uint8)


def load_binarized_mnist(data_dir: Path) -> DataSplits:
    """Static binarized MNIST (Larochelle & Murray 2011), 50000/10000/10000 x 784, from
    `binarized_mnist.npz` (bit-packed along the pixel axis) or the three original .amat text files."""
    npz = data_dir / BINARIZED_MNIST_NPZ
    amats = [data_dir / name for name in BINARIZED_MNIST_AMAT]
    if npz.is_file():
        packed = read_npz("binarized-mnist", npz, ("train", "valid", "test"), BINARIZED_MNIST_SHA256)
        arrays = tuple(np.unpackbits(a, axis=1) for a in packed.values())
        source = npz
    elif all(p.is_file() for p in amats):
        arrays = tuple(_read_amat(p) for p in amats)
        source = amats[0]
    else:
        raise DatasetNotFoundError(missing_data_message(
            "binarized-mnist", [npz, *amats],
            f"Provide {BINARIZED_MNIST_NPZ} (keys train/valid/test, np.packbits(x, axis=1)) or the three "
            f"files {', '.join(BINARIZED_MNIST_AMAT)} of Larochelle & Murray (2011) in that directory. "
            "No automatic download: the dataset has no canonical URL with a published checksum."))
    check_split_sizes("binarized-mnist", source, arrays, BINARIZED_MNIST_SIZES)
    train, valid, test = (to_tensor(a) for a in arrays)
    return DataSplits("binarized-mnist", train, valid, test, likelihood="bernoulli", image_shape=(28, 28))


def _caltech_object_upright(packed: np.ndarray) -> np.ndarray:
    """Source pixels are 1 = background and MATLAB column-major; flip to object = 1 and row-major."""
    x = np.unpackbits(packed, axis=1)
    x = x.reshape(-1, 28, 28).transpose(0, 2, 1).reshape(-1, 784)
    return 1 - x


def load_caltech101(data_dir: Path) -> DataSplits:
    """Caltech 101 Silhouettes 28x28, split 1 (Marlin et al. 2010), 4100/2264/2307 x 784, object = 1,
    upright images (the stored file keeps the source's background = 1, column-major layout)."""
    path = first_existing([data_dir / CALTECH_NPZ])
    if path is None:
        raise DatasetNotFoundError(missing_data_message(
            "caltech101", [data_dir / CALTECH_NPZ],
            f"Provide {CALTECH_NPZ} (keys train/valid/test, bit-packed pixels of "
            "caltech101_silhouettes_28_split1.mat) in that directory. No automatic download."))
    packed = read_npz("caltech101", path, ("train", "valid", "test"), CALTECH_SHA256)
    arrays = tuple(_caltech_object_upright(a) for a in packed.values())
    check_split_sizes("caltech101", path, arrays, CALTECH_SIZES)
    train, valid, test = (to_tensor(a) for a in arrays)
    return DataSplits("caltech101", train, valid, test, likelihood="bernoulli", image_shape=(28, 28))
