"""inference/keyed.py: row keys read only observed values and the mask; keyed noise is addressed by
(row key, particle index), so chunks of particles draw the same numbers as one call; the noise has the
moments of uniforms and standard normals; the latent samplers draw from q."""

from __future__ import annotations

import math

import torch

from deepem.inference.distributions import DiagonalGaussian, FactorisedBernoulli
from deepem.inference.keyed import (
    keyed_latent_sample,
    keyed_normal,
    keyed_uniform,
    mix64,
    row_keys,
    substream,
    take_rows,
)


def test_mix64_is_splitmix64():
    """The reference output of splitmix64 seeded with 0 (Vigna's splitmix64.c): its first value."""
    state = torch.tensor([0x9E3779B97F4A7C15 - (1 << 64)], dtype=torch.int64)
    assert int(mix64(state)) & ((1 << 64) - 1) == 0xE220A8397B1DCDAF


def test_row_keys_read_observed_values_and_the_mask_only():
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, -5.0, 3.0], [-0.0, 2.0, 3.0], [0.0, 2.0, 3.0]])
    mask = torch.tensor([[True, True, True], [True, False, True], [True, False, True], [True, True, True],
                         [True, True, True]])
    keys = row_keys(x, mask, seed=7)
    assert keys[1] == keys[2]  # the missing entry's content is not read
    assert keys[0] != keys[1]  # but whether it is missing is
    assert keys[3] == keys[4]  # -0.0 and 0.0 are one value
    assert keys[0] != keys[3]
    assert (row_keys(x, mask, seed=8) != keys).all()
    assert torch.equal(row_keys(x[[4, 0]], mask[[4, 0]], seed=7), keys[[4, 0]])  # each row on its own
    assert torch.equal(row_keys(x.double(), mask, seed=7), keys)  # the value, not its dtype


def test_noise_is_addressed_by_particle_and_chunks_agree():
    keys = row_keys(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), None, seed=1)
    whole = keyed_normal(keys, 0, 50, 3)
    chunked = torch.cat([keyed_normal(keys, 0, 17, 3), keyed_normal(keys, 17, 33, 3)])
    assert torch.equal(whole, chunked) and whole.shape == (50, 4, 3)
    assert torch.equal(keyed_normal(keys[[2, 0]], 0, 50, 3), whole[:, [2, 0]])
    assert not torch.equal(keyed_normal(substream(keys, 1), 0, 50, 3), whole)


def test_noise_moments():
    keys = row_keys(torch.zeros(2, 1), None, seed=0)
    u = keyed_uniform(keys, 0, 100_000, 4)
    assert 0 < float(u.min()) and float(u.max()) < 1
    n = u.numel()
    # mean 1/2 and variance 1/12 within 5 standard errors; neighbouring values uncorrelated
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(float(u.var()) - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    flat = u.flatten() - 0.5
    assert abs(float((flat[1:] * flat[:-1]).mean())) < 5 / 12 / math.sqrt(n)
    z = keyed_normal(keys, 0, 100_000, 4)
    assert abs(float(z.mean())) < 5 / math.sqrt(n) and abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    assert abs(float((z > 1.96).double().mean()) - 0.025) < 5 * math.sqrt(0.025 * 0.975 / n)


def test_latent_samples_follow_q_and_rows_can_be_taken():
    keys = row_keys(torch.arange(6.0).view(3, 2), None, seed=3)
    q = DiagonalGaussian(torch.tensor([[0.0, 5.0], [1.0, -1.0], [2.0, 0.0]], dtype=torch.float64),
                         torch.tensor([[1.0, 0.1], [2.0, 1.0], [0.5, 3.0]], dtype=torch.float64))
    z = keyed_latent_sample(q, keys, 0, 40_000)
    assert z.shape == (40_000, 3, 2)
    assert torch.allclose(z.mean(0), q.loc, atol=5 * float(q.std.max()) / 200)
    assert torch.allclose(z.std(0), q.std, rtol=0.03)
    assert torch.equal(keyed_latent_sample(take_rows(q, slice(1, 3)), keys[1:], 0, 100), z[:100, 1:])
    b = FactorisedBernoulli(torch.tensor([[0.0, 2.0]]))
    draws = keyed_latent_sample(b, keys[:1], 0, 40_000)
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    assert torch.allclose(draws.mean(0), torch.sigmoid(b.logits), atol=0.01)
