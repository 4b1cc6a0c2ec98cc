"""Sharded evaluation (issue 15): each rank's block of batches, after replaying the draws of the batches
before it, gives exactly the per-point values a single process gives. Here the ranks run one after the
other in this process (gather = this rank's part; the parts are joined in rank order, as the all-gather
does); tests/cli/test_scale_out.py runs the real thing on 2 gloo ranks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from deepem.evaluation.ais import ais_log_likelihood
from deepem.evaluation.bdmc import bdmc
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.evaluation.sharding import Shard, batch_plan
from deepem.models.config import ModelConfig, make_model
from deepem.models.linear_gaussian import linear_gaussian_model


def _identity(t: Tensor) -> Tensor:
    return t


def sharded(run: Callable[[Shard | None], Tensor], world: int) -> Tensor:
    """The ranks' parts of a sharded evaluation, run in turn and joined in rank order."""
    return torch.cat([run(Shard(r, world, _identity)) for r in range(world)])


@pytest.fixture(scope="module")
def lg():
    gen = torch.Generator().manual_seed(3)
    model = linear_gaussian_model(data_dim=5, latent_dim=2, noise_std=0.5, generator=gen)
    x = torch.randn(23, 5, generator=gen, dtype=torch.float64)
    return model, x


def test_the_plan_replays_the_batches_before_the_block_and_stops_after_it():
    plan = [batch_plan(23, 5, Shard(r, 2, _identity)) for r in range(2)]  # 5 batches: 3 + 2
    assert plan[0] == [(0, True), (5, True), (10, True)]
    assert plan[1] == [(0, False), (5, False), (10, False), (15, True), (20, True)]
    assert batch_plan(23, 5, None) == [(s, True) for s in (0, 5, 10, 15, 20)]
    assert batch_plan(3, 5, Shard(1, 2, _identity)) == []  # fewer batches than ranks: nothing to do


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_iw_equals_one_process_per_point(lg, world):
    model, x = lg
    one = iw_log_likelihood(model, x, particles=7, batch_size=5, seed=11, chunk_particles=3).per_point
    parts = sharded(lambda s: iw_log_likelihood(model, x, particles=7, batch_size=5, seed=11, chunk_particles=3,
                                                shard=s).per_point, world)
    assert torch.equal(parts, one)


def test_sharded_iw_with_binary_latents_equals_one_process():
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=6, hidden=[8], latent="bernoulli",
                                                    likelihood="bernoulli"), 10)
    x = torch.bernoulli(torch.full((13, 10), 0.4), generator=torch.Generator().manual_seed(1))
    one = iw_log_likelihood(model, x, particles=9, batch_size=4, seed=2).per_point
    assert torch.equal(sharded(lambda s: iw_log_likelihood(model, x, 9, batch_size=4, seed=2, shard=s).per_point, 2),
                       one)


@pytest.mark.parametrize("initial", ["prior", "encoder"])
def test_sharded_ais_equals_one_process_per_point_and_in_its_diagnostics(lg, initial):
    model, x = lg
    kw = dict(chains=3, temperatures=6, leapfrog_steps=2, batch_size=6, seed=5, initial=initial)
    one = ais_log_likelihood(model, x, **kw)
    ranks = [ais_log_likelihood(model, x, shard=Shard(r, 2, _identity), **kw) for r in range(2)]
    assert torch.equal(torch.cat([r.per_point for r in ranks]), one.per_point)
    # (each rank's acceptance mean covers its own points here: the all-gather makes it the global one)
    assert one.settings["mean_acceptance"] != ranks[0].settings["mean_acceptance"]


def test_sharded_bdmc_equals_one_process(lg):
    model, _ = lg
    kw = dict(n_points=9, chains=2, temperatures=5, leapfrog_steps=2, batch_size=3, seed=8)
    one = bdmc(model, **kw)
    ranks = [bdmc(model, shard=Shard(r, 2, _identity), **kw) for r in range(2)]
    assert torch.equal(torch.cat([r.lower for r in ranks]), one.lower)
    assert torch.equal(torch.cat([r.upper for r in ranks]), one.upper)
    assert all(torch.equal(r.data, one.data) for r in ranks)


def test_without_the_replay_the_draws_would_differ(lg):
    # The replay is what makes sharding exact: rank 1 starting its block from the fresh generator
    # (i.e. skipping the earlier batches' draws) gets other values for its points.
    model, x = lg
    one = iw_log_likelihood(model, x, particles=7, batch_size=5, seed=11).per_point
    fresh = iw_log_likelihood(model, x[15:], particles=7, batch_size=5, seed=11).per_point
    assert not torch.equal(fresh, one[15:])
