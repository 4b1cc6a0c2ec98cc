"""Grey-level MNIST and Fashion-MNIST from the canonical IDX files, for dynamic binarisation.

Train = the first 50000 of the 60000 training images as grey levels in [0, 1] (binarised afresh every
epoch by the trainer, `dynamic_binarization=True`); valid = the last 10000 training images and test =
the 10000 test images, each binarised once at load time with a seeded generator so that evaluations are
comparable (the usual protocol of Burda et al. 2016 / Tucker et al. 2019 with a 50000/10000 split)."""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepem.data.base import DataSplits, binarize
from deepem.data.download import RemoteFile, ensure_file, mirror_urls
from deepem.data.images import to_tensor

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte data, 3 dimensions (N, rows, cols)


@dataclass(frozen=True)
class IdxDataset:
    """Where an MNIST-format dataset comes from and how it is split."""

    name: str
    subdir: str  # files are cached in <data_dir>/<subdir>/
    env_var: str  # base URL tried before the mirrors
    mirrors: tuple[str, ...]
    train_images: RemoteFile
    test_images: RemoteFile
    n_train_images: int = 60000
    n_test_images: int = 10000
    n_valid: int = 10000  # carved from the END of the training images
    image_shape: tuple[int, int] = (28, 28)


# sha256 from TensorFlow Datasets, tensorflow_datasets/url_checksums/mnist.txt (commit 31f1255e), which lists
# the same byte sizes as yann.lecun.com (train 9912422, t10k 1648877); the same digests are pinned
# independently by several other public repositories. The ossci-datasets mirror is torchvision's, serving
# the same files (torchvision pins their md5 f68b3c2d.../9fb629c4...).
MNIST = IdxDataset(
    name="mnist",
    subdir="mnist",
    env_var="DEEPEM_MNIST_URL",
    mirrors=(
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    train_images=RemoteFile("train-images-idx3-ubyte.gz",
                            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    test_images=RemoteFile("t10k-images-idx3-ubyte.gz",
                           "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
)
# Labels are not needed for density estimation; their digests, for anyone who fetches them by hand:
# train-labels-idx1-ubyte.gz 3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c,
# t10k-labels-idx1-ubyte.gz f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6 (same source).

# sha256 from TensorFlow Datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt (commit 333639b3),
# for the canonical URLs of zalandoresearch/fashion-mnist (sizes 26421880 / 4422102 bytes); torchvision
# pins the md5 of the same files (8d4fb7e6c68d591d4c3dfef9ec88bf0d / bef4ecab320f06d8554ea6380940ec79).
# The copy in the project's GitHub repository (data/fashion/) is the second mirror.
# Labels: train a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845,
# t10k 67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5.
FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    subdir="fashion-mnist",
    env_var="DEEPEM_FASHION_MNIST_URL",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    train_images=RemoteFile("train-images-idx3-ubyte.gz",
                            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    test_images=RemoteFile("t10k-images-idx3-ubyte.gz",
                           "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
)


def read_idx_images(path: Path) -> np.ndarray:
    """uint8 images (N, rows, cols) from an IDX3 file, gzip-compressed or not (checked by magic bytes)."""
    with path.open("rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 16:
        raise ValueError(f"{path}: too short for an IDX image file ({len(raw)} bytes)")
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IDX_IMAGES_MAGIC:
        raise ValueError(f"{path}: not an IDX image file "
                         f"(magic {magic:#010x}, expected {IDX_IMAGES_MAGIC:#010x})")
    expected = n * rows * cols
    if len(raw) - 16 != expected:
        raise ValueError(f"{path}: header says {n} images of {rows}x{cols} = {expected} bytes, "
                         f"file holds {len(raw) - 16}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def load_idx_dataset(spec: IdxDataset, data_dir: Path, download: bool, seed: int) -> DataSplits:
    """Grey-level train split plus once-binarised valid/test splits (see the module docstring)."""
    cache = data_dir / spec.subdir
    images = {}
    for which, remote, count in (("train", spec.train_images, spec.n_train_images),
                                 ("test", spec.test_images, spec.n_test_images)):
        urls = mirror_urls(remote.filename, spec.mirrors, spec.env_var)
        path = ensure_file(remote, cache, urls, spec.name, download)
        x = read_idx_images(path)
        if x.shape != (count, *spec.image_shape):
            raise ValueError(f"{spec.name}: {path} holds images of shape {x.shape}, "
                             f"expected {(count, *spec.image_shape)}")
        images[which] = x.reshape(count, -1).astype(np.float32) / 255.0
    n_fit = spec.n_train_images - spec.n_valid
    train = to_tensor(images["train"][:n_fit])
    # One generator for both splits: valid and test are fixed for a given seed (default 0).
    generator = torch.Generator().manual_seed(seed)
    valid = binarize(to_tensor(images["train"][n_fit:]), generator)
    test = binarize(to_tensor(images["test"]), generator)
    return DataSplits(spec.name, train, valid, test, likelihood="bernoulli", image_shape=spec.image_shape,
                      dynamic_binarization=True)
