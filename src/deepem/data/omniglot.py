"""Omniglot 28x28 of Burda et al. (IWAE, 2016): `chardata.mat` (keys `data` 784 x 24345 and `testdata`
784 x 8070, grey levels in [0, 1], pixels in column-major order), dynamically binarised as in IWAE.

Split exactly as the IWAE code does (yburda/iwae, datasets.py, `binarized_shuffled_omniglot`): the training
images are shuffled by np.random.RandomState(123).permutation and the LAST 1345 become the validation
split, leaving 23000 for training; the 8070 test images are the test split. Validation and test are
binarised once with a seeded generator; train holds grey levels (`dynamic_binarization=True`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepem.data.base import DataSplits, binarize
from deepem.data.download import RemoteFile, ensure_file, mirror_urls
from deepem.data.images import to_tensor

OMNIGLOT_SUBDIR = "omniglot"
OMNIGLOT_ENV_VAR = "DEEPEM_OMNIGLOT_URL"
OMNIGLOT_MIRRORS = (
    "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/",
    "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/",
)
# No authoritative checksum of chardata.mat is published (the IWAE repository pins none, and no copy was
# available to hash when this was written), so it is not pinned: the first download prints its sha256.
OMNIGLOT_FILE = RemoteFile("chardata.mat", sha256=None)
OMNIGLOT_SIZES = (24345, 8070)
OMNIGLOT_N_VALID = 1345
OMNIGLOT_SHUFFLE_SEED = 123  # IWAE's shuffle seed, so the validation split is IWAE's


def _upright(columns: np.ndarray) -> np.ndarray:
    """(784, N) column-major pixels -> (N, 784) row-major, upright images."""
    x = np.asarray(columns, dtype=np.float32).T
    return x.reshape(-1, 28, 28).transpose(0, 2, 1).reshape(-1, 784)


def read_chardata(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) grey levels, (N, 784) float32 in [0, 1], from chardata.mat."""
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise ImportError("reading Omniglot's chardata.mat needs scipy: pip install scipy") from err
    mat = loadmat(str(path))
    missing = [k for k in ("data", "testdata") if k not in mat]
    if missing:
        raise ValueError(f"omniglot: {path} has no key(s) {missing}; "
                         "expected the chardata.mat of Burda et al.")
    train, test = _upright(mat["data"]), _upright(mat["testdata"])
    if (train.shape[0], test.shape[0]) != OMNIGLOT_SIZES or train.shape[1] != 784:
        raise ValueError(f"omniglot: {path} has train {train.shape}, test {test.shape}; expected "
                         f"({OMNIGLOT_SIZES[0]}, 784) and ({OMNIGLOT_SIZES[1]}, 784)")
    for name, x in (("data", train), ("testdata", test)):
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"omniglot: {path} key {name} has values outside [0, 1]")
    return train, test


def load_omniglot(data_dir: Path, download: bool, seed: int) -> DataSplits:
    """Omniglot 28x28, 23000/1345/8070, grey-level train for dynamic binarisation (see module docstring).
    Looks for <data_dir>/omniglot/chardata.mat, then <data_dir>/chardata.mat, else downloads."""
    urls = mirror_urls(OMNIGLOT_FILE.filename, OMNIGLOT_MIRRORS, OMNIGLOT_ENV_VAR)
    path = ensure_file(OMNIGLOT_FILE, data_dir / OMNIGLOT_SUBDIR, urls, "omniglot", download,
                       also_search=[data_dir / OMNIGLOT_FILE.filename])
    train_all, test = read_chardata(path)
    train_all = train_all[np.random.RandomState(OMNIGLOT_SHUFFLE_SEED).permutation(train_all.shape[0])]
    train, valid = train_all[:-OMNIGLOT_N_VALID], train_all[-OMNIGLOT_N_VALID:]
    generator = torch.Generator().manual_seed(seed)
    valid_b = binarize(to_tensor(valid), generator)
    test_b = binarize(to_tensor(test), generator)
    return DataSplits("omniglot", to_tensor(train), valid_b, test_b, likelihood="bernoulli",
                      image_shape=(28, 28), dynamic_binarization=True)
