"""Corruption into incomplete data: MCAR at the asked rate, exactly n of 9 patches (bands 10/9/9) per
image, MAR and self-masking MNAR masks at the asked rate with the dependence each claims,
specs parsed with clear errors, one seed -> the same masks, NaN where missing, complete data
kept, and standardisation with observed training entries only."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepem.data.base import DataSplits
from deepem.data.corruption import (
    CorruptionSpec,
    binarize_observed,
    corrupt_splits,
    mar,
    mcar,
    mnar_self,
    parse_corruption,
    patch_bands,
    patch_index,
    patches,
)
from deepem.data.incomplete import load_incomplete
from deepem.data.standardize import restandardize_observed, standardize_observed
from deepem.data.uci import standardize


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mcar_removes_entries_at_the_asked_rate_reproducibly():
    for p in (0.2, 0.5, 0.8):
        mask = mcar((400, 100), p, g(0))
        assert mask.dtype == torch.bool and mask.shape == (400, 100)
        assert abs(float((~mask).float().mean()) - p) < 0.01  # 40000 entries: 5 standard errors
    assert torch.equal(mcar(torch.zeros(50, 7), 0.5, g(3)), mcar((50, 7), 0.5, g(3)))
    assert not torch.equal(mcar((50, 7), 0.5, g(3)), mcar((50, 7), 0.5, g(4)))
    assert mcar((5, 5), 0.0, g(0)).all()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        mcar((5, 5), 1.0)


def skewed_table(n: int = 20000, seed: int = 0) -> torch.Tensor:
    """Four columns: normal, exponential (skewed), uniform, and a binary column."""
    gen = g(seed)
    return torch.stack([torch.randn(n, generator=gen), -torch.rand(n, generator=gen).log(),
                        torch.rand(n, generator=gen), (torch.rand(n, generator=gen) < 0.3).double()], dim=1)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_mnar_self_masks_each_column_at_rate_p_by_its_own_values(p):
    x = skewed_table()
    mask = mnar_self(x, p, g(1))
    assert mask.dtype == torch.bool and mask.shape == x.shape
    rates = (~mask).double().mean(dim=0)
    assert (rates - p).abs().max() < 0.015  # 20000 rows: about 4 standard errors
    for j in range(x.shape[1]):  # high values go missing more often
        assert x[~mask[:, j], j].mean() > x[mask[:, j], j].mean() + 0.1 * x[:, j].std()
    # a column's mask depends on that column only: changing the other columns changes nothing in it
    other = x.clone()
    other[:, 1:] = skewed_table(seed=5)[:, 1:]
    moved = mnar_self(other, p, g(1))
    assert torch.equal(moved[:, 0], mask[:, 0]) and not torch.equal(moved[:, 1], mask[:, 1])
    assert torch.equal(mask, mnar_self(x, p, g(1)))
    assert mnar_self(x, 0.0, g(1)).all()


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_mar_masks_depend_on_the_observed_driver_only(p):
    x = skewed_table()
    mask = mar(x, p, g(2), driver=0)
    rates = (~mask).double().mean(dim=0)
    assert rates[0] == 0  # the driver is always observed
    assert (rates[1:] - p).abs().max() < 0.015
    for j in (1, 2, 3):  # missing where the driver is high; not through the column's own values
        assert x[~mask[:, j], 0].mean() > x[mask[:, j], 0].mean() + 0.5
        assert abs(float(x[~mask[:, j], 2].mean() - x[mask[:, j], 2].mean())) < 0.02 or j == 2
    # changing every column but the driver leaves the mask as it was: given the driver, it ignores the values
    other = x.clone()
    other[:, 1:] = skewed_table(seed=5)[:, 1:]
    assert torch.equal(mar(other, p, g(2), driver=0), mask)
    other[:, 0] = skewed_table(seed=5)[:, 0]
    assert not torch.equal(mar(other, p, g(2), driver=0), mask)
    # by default the driver is the column of largest standard deviation (the exponential one here is 1 too;
    # scale it up to make the choice unambiguous)
    wide = x * torch.tensor([1.0, 3.0, 1.0, 1.0], dtype=torch.float64)
    assert (~mar(wide, p, g(2))).double().mean(dim=0)[1] == 0


def test_mar_and_mnar_refuse_incomplete_tables_and_bad_rates():
    x = skewed_table(100)
    with pytest.raises(ValueError, match="complete"):
        mar(x.masked_fill(x > 2, float("nan")), 0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        mnar_self(x, 1.0)
    with pytest.raises(ValueError, match="two columns"):
        mar(x[:, :1], 0.2)
    with pytest.raises(ValueError, match="driver column 7"):
        mar(x, 0.2, driver=7)


def test_patches_split_28_pixels_10_9_9():
    assert patch_bands(28, 3) == [10, 9, 9]
    sizes = torch.bincount(patch_index(28, 3), minlength=9).tolist()
    assert sizes == [100, 90, 90, 90, 81, 81, 90, 81, 81]
    image = patch_index(28, 3).reshape(28, 28)
    assert image[9, 9] == 0 and image[10, 10] == 4 and image[0, 27] == 2 and image[27, 0] == 6


@pytest.mark.parametrize("n_remove", [0, 3, 6, 9])
def test_patches_remove_exactly_n_of_nine_per_image(n_remove):
    mask = patches(200, n_remove, g(1))
    assert mask.shape == (200, 784) and mask.dtype == torch.bool
    index = patch_index(28, 3)
    # per image and patch: the number of observed pixels is 0 or the whole patch
    observed = torch.zeros(200, 9).index_add_(1, index, mask.float())
    sizes = torch.bincount(index, minlength=9).float()
    whole, none = observed == sizes, observed == 0
    assert (whole | none).all()
    assert (none.sum(1) == n_remove).all()
    if 0 < n_remove < 9:  # every patch gets removed in some image: the choice is random
        assert none.any(0).all() and whole.any(0).all()
    assert torch.equal(mask, patches(200, n_remove, g(1)))


def test_parse_corruption_specs_and_errors():
    assert parse_corruption("mcar:0.5") == CorruptionSpec("mcar", 0.5)
    assert parse_corruption(" Patches:3 ") == CorruptionSpec("patches", 3)
    assert str(parse_corruption("patches:3")) == "patches:3"
    for bad, match in [("dropout:0.5", "unknown missing-data spec"), ("mcar", "unknown missing-data spec"),
                       ("mcar:half", "not a probability"), ("patches:2.5", "whole number"),
                       ("mcar:1.0", r"\(0, 1\)"), ("patches:10", "1 .. 9"), ("mcar:0", "removes nothing")]:
        with pytest.raises(ValueError, match=match):
            parse_corruption(bad)


def image_splits() -> DataSplits:
    x = torch.bernoulli(torch.full((30, 784), 0.3), generator=g(0))
    return DataSplits("toy", x[:20], x[20:25], x[25:], "bernoulli", image_shape=(28, 28))


def test_corrupt_splits_keeps_the_complete_data_and_writes_nan_where_missing():
    data = image_splits()
    out = corrupt_splits(data, "patches:4", seed=7)
    again = corrupt_splits(data, "patches:4", seed=7)
    other = corrupt_splits(data, "patches:4", seed=8)
    assert out.complete is data and str(out.spec) == "patches:4" and out.seed == 7
    for split in ("train", "valid", "test"):
        x, mask = out.splits.split(split), out.splits.mask(split)
        assert torch.equal(mask, again.splits.mask(split))
        assert torch.isnan(x[~mask]).all() and torch.equal(x[mask], data.split(split)[mask])
        assert int((~mask).sum()) > 0
    assert not torch.equal(out.splits.train_mask, other.splits.train_mask)
    assert data.train_mask is None and not torch.isnan(data.train).any()  # the input is untouched
    train_only = corrupt_splits(data, "mcar:0.5", seed=7, splits=("train",))
    assert train_only.splits.test_mask is None and torch.equal(train_only.splits.test, data.test)
    with pytest.raises(ValueError, match="already has observed-data masks"):
        corrupt_splits(out.splits, "mcar:0.5", seed=0)
    tabular = DataSplits("table", torch.randn(10, 4), torch.randn(3, 4), torch.randn(3, 4), "gaussian")
    with pytest.raises(ValueError, match="use 'mcar:P' for tabular data"):
        corrupt_splits(tabular, "patches:3", seed=0)


def test_binarize_observed_keeps_missing_entries_missing():
    x = torch.tensor([[0.2, float("nan"), 0.9]])
    mask = torch.tensor([[True, False, True]])
    out = binarize_observed(x, mask, g(0))
    assert math.isnan(out[0, 1]) and set(out[mask].tolist()) <= {0.0, 1.0}


def test_standardisation_uses_observed_training_entries_only():
    rng = np.random.default_rng(0)
    raw = rng.normal([3.0, -1.0, 10.0], [2.0, 0.5, 4.0], size=(300, 3))
    train, valid, test = (torch.from_numpy(a) for a in np.split(raw, [200, 250]))
    splits = DataSplits("table", *(torch.from_numpy(a) for a in standardize(*np.split(raw, [200, 250]))),
                        "gaussian")
    corrupted = corrupt_splits(splits, "mcar:0.5", seed=1)
    mask = corrupted.splits.train_mask
    out = restandardize_observed(corrupted)
    observed_train = out.splits.train.masked_fill(~mask, 0.0)
    count = mask.sum(0)
    mean = observed_train.sum(0) / count
    std = torch.sqrt(((observed_train - mean) * mask).pow(2).sum(0) / count)
    torch.testing.assert_close(mean, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(std, torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
    # the same as standardising the raw table with the observed raw statistics
    direct = standardize_observed(train, mask, valid, test)
    for split, expected in zip(("train", "valid", "test"), direct, strict=True):
        m = corrupted.splits.mask(split)
        torch.testing.assert_close(out.splits.split(split)[m], expected[m], atol=1e-10, rtol=0)
        torch.testing.assert_close(out.complete.split(split), expected.new_tensor(
            (raw[{"train": slice(0, 200), "valid": slice(200, 250), "test": slice(250, 300)}[split]]
             - direct_moments(train, mask)[0]) / direct_moments(train, mask)[1]), atol=1e-10, rtol=0)
        assert torch.isnan(out.splits.split(split)[~m]).all()


def direct_moments(train: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std of the observed raw entries, by numpy."""
    cols = [train[:, j][mask[:, j]].numpy() for j in range(train.shape[1])]
    return np.array([c.mean() for c in cols]), np.array([c.std() for c in cols])


def test_load_incomplete_uci_table_is_restandardised_with_observed_entries(shared_data_dir):
    out = load_incomplete("banknote", "mcar:0.5", seed=3, data_dir=shared_data_dir)
    again = load_incomplete("banknote", "mcar:0.5", seed=3, data_dir=shared_data_dir)
    assert torch.equal(out.splits.train_mask, again.splits.train_mask)
    mask = out.splits.train_mask
    observed_mean = out.splits.train.masked_fill(~mask, 0.0).sum(0) / mask.sum(0)
    torch.testing.assert_close(observed_mean, torch.zeros(4), atol=1e-5, rtol=0)
    assert abs(float((~mask).float().mean()) - 0.5) < 0.03
    assert not torch.isnan(out.complete.train).any() and out.complete.train_mask is None
