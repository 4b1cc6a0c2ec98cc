"""A user's file as a dataset (data/own_dataset.py): seeded, recorded splits; standardisation with the
observed training entries, recorded and invertible; extra missingness on top; the registry loads a path;
a changed file is refused with both checksums."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepem.data.own_dataset import (
    FileChangedError,
    SplitSettingError,
    Standardization,
    check_sha256,
    draw_splits,
    file_units,
    load_file_dataset,
    model_rows,
)
from deepem.data.registry import load_dataset
from deepem.data.standardize import observed_moments
from deepem.files import sha256_file


@pytest.fixture
def csv_file(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]
    cells = [["" if rng.random() < 0.2 else f"{v:.4f}" for v in row] for row in values]
    for row in cells:
        row[0] = row[0] or "0.5"  # no row without an observed cell
    path = tmp_path / "mine.csv"
    path.write_text("u,v,w\n" + "".join(",".join(r) + "\n" for r in cells))
    return path


def test_splits_are_seeded_recorded_and_a_partition():
    a, b = draw_splits(50, (0.8, 0.1, 0.1), 3), draw_splits(50, (0.8, 0.1, 0.1), 3)
    c = draw_splits(50, "0.8,0.1,0.1", 4)
    assert a == b and a != c
    assert (len(a.train), len(a.valid), len(a.test)) == (40, 5, 5)
    assert sorted(a.train + a.valid + a.test) == list(range(50))
    assert json.loads(json.dumps(a.to_dict())) == a.to_dict()
    with pytest.raises(SplitSettingError, match="three fractions train,valid,test that sum to 1"):
        draw_splits(50, "0.8,0.3", 0)


def test_standardisation_uses_observed_training_entries_and_is_recorded(csv_file):
    data = load_file_dataset(csv_file, seed=1)
    table, split, scale = data.table, data.split, data.standardization
    train_rows = table.values[split.train]
    expected_mean = np.nanmean(train_rows, axis=0)
    expected_std = np.nanstd(train_rows, axis=0)
    np.testing.assert_allclose(scale.mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(scale.std, expected_std, rtol=1e-12)
    assert data.splits.likelihood == "gaussian" and data.splits.train.shape == (40, 3)
    assert torch.equal(data.splits.train_mask, torch.from_numpy(table.mask[split.train]))
    train = data.splits.train.double().numpy()
    np.testing.assert_allclose(np.nanmean(train, axis=0), 0, atol=1e-6)
    # the record is JSON and rebuilds the same data; outputs go back to the file's scale
    record = json.loads(json.dumps(data.record()))
    assert record["sha256"] == sha256_file(csv_file) and record["columns"] == ["u", "v", "w"]
    assert record["split"]["train"] == split.train and record["header"] is True
    again = load_file_dataset(record["path"], record["split"]["seed"], record["split"]["fractions"],
                              sha256=record["sha256"])
    assert torch.equal(again.splits.valid.nan_to_num(), data.splits.valid.nan_to_num())
    rows, mask = model_rows(table, Standardization.from_dict(record["standardization"]))
    back = file_units(rows, scale)
    np.testing.assert_allclose(back[table.mask], table.values[table.mask], rtol=1e-12)
    assert torch.equal(mask, torch.from_numpy(table.mask))


def test_extra_missingness_goes_on_top_of_the_files(csv_file):
    plain = load_file_dataset(csv_file, seed=1)
    more = load_file_dataset(csv_file, seed=1, missing="mcar:0.5", missing_seed=2)
    for split in ("train", "valid", "test"):
        assert not (more.splits.mask(split) & ~plain.splits.mask(split)).any()  # nothing becomes observed
    assert more.splits.train_mask.sum() < 0.7 * plain.splits.train_mask.sum()
    assert torch.isnan(more.splits.train[~more.splits.train_mask]).all()
    assert more.record()["missing"] == "mcar:0.5" and more.record()["missing_seed"] == 2


def test_the_registry_loads_a_path_and_a_changed_file_is_refused(csv_file):
    data = load_dataset(str(csv_file), seed=1)
    assert torch.equal(data.train.nan_to_num(), load_file_dataset(csv_file, seed=1).splits.train.nan_to_num())
    digest = sha256_file(csv_file)
    check_sha256(csv_file, digest)
    csv_file.write_text(csv_file.read_text().replace("u,v,w", "u,v,x"))
    with pytest.raises(FileChangedError) as caught:
        check_sha256(csv_file, digest)
    assert digest in str(caught.value) and sha256_file(csv_file) in str(caught.value)
    with pytest.raises(ValueError, match="no file .*nothere.csv exists"):
        load_dataset(str(csv_file.with_name("nothere.csv")))


def test_binary_images_are_bernoulli_and_not_standardised(tmp_path):
    images = (np.random.default_rng(0).random((20, 4, 4)) < 0.3).astype(np.float32)
    images[:, 0, 0] = 0  # a constant pixel is fine for images
    images[0, 1, 1] = np.nan
    np.save(tmp_path / "img.npy", images)
    data = load_file_dataset(tmp_path / "img.npy", seed=0, fractions="0.5,0.25,0.25")
    assert data.splits.likelihood == "bernoulli" and data.splits.image_shape == (4, 4)
    assert data.standardization is None and data.splits.train.shape == (10, 16)
    patched = load_file_dataset(tmp_path / "img.npy", seed=0, missing="patches:1")
    assert (~patched.splits.train_mask).sum() > (~data.splits.train_mask).sum()


def test_statistics_that_overflow_raise_rather_than_standardise_to_nan():
    values = torch.tensor([[1e300, 1.0], [-1e300, 2.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="not finite"):
        observed_moments(values, torch.ones_like(values, dtype=torch.bool))
    mean, std = observed_moments(values[:, 1:], torch.ones(2, 1, dtype=torch.bool))
    assert mean.tolist() == [1.5] and std.tolist() == [0.5]
