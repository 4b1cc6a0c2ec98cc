"""Data-parallel training on 2 gloo ranks on localhost (issue 15): the exact relation to one process,
a killed rank, and exact resume. Ranks are started by the same launcher as `--nproc` (fork here, so
that they need not import torch again)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from training_helpers import binary_data, tiny_config

from deepem.training.checkpoint_file import CheckpointError, load_latest_good
from deepem.training.distributed import EXIT_LOST_PEER, Parallel, finish, lost_peer, rank_seed, seed_rank_stream
from deepem.training.step import StepResult, TrainStep, backward_losses
from deepem.workflows import launch as launch_module
from deepem.workflows.assembly import build_trainer
from deepem.workflows.launch import launch
from deepem.workflows.train import run_training

WORLD = 2
CONFIG = tiny_config(particles=5, epochs=2)  # 100 points, global batch 20: 10 steps; validation each epoch
DATA = binary_data(100, 16)


@pytest.fixture(autouse=True)
def _fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch_module, "START_METHOD", "fork")


def _quiet(message: str) -> None:
    pass


def _train_entry(argv: list[str]) -> int:
    """One rank: train CONFIG on DATA into argv[0]; argv[1] = a step at which rank 1 kills itself (or -1);
    argv[2] = "resume" to continue the run in argv[0]."""
    torch.set_num_threads(1)
    out, kill_at, resume = argv[0], int(argv[1]), argv[2:] == ["resume"]

    def hook(step: int, x: torch.Tensor) -> torch.Tensor:
        if step == kill_at and os.environ["RANK"] == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    try:
        return run_training(CONFIG, out, resume=resume, data=DATA, batch_hook=hook, progress=False, log=_quiet,
                            handle_signals=False)
    except RuntimeError as err:  # as `deepem` does: a rank that lost its peer exits with EXIT_LOST_PEER
        if lost_peer(err):
            return EXIT_LOST_PEER
        raise


def _final_state(run: Path) -> dict[str, Any]:
    found = load_latest_good(run / "checkpoints")
    assert found is not None
    return found[1]


class SequentialShards:
    """The one-process reference: a TrainStep that computes the N shards of each batch in turn, shard r
    drawing from rank r's stream, and sums the gradients scaled by each shard's share of the batch,
    exactly as the ranks' all_reduce does; then one optimiser step per group."""

    def __init__(self, inner: TrainStep, seed: int, world: int) -> None:
        self.inner = inner
        self.streams = []
        for r in range(world):
            torch.manual_seed(rank_seed(seed, r))
            self.streams.append(torch.get_rng_state())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> StepResult:
        inner = self.inner
        params = [p for ps in inner.groups.values() for p in ps]
        summed: list[torch.Tensor | None] = [None] * len(params)
        first = None
        for r, part in enumerate(torch.tensor_split(torch.arange(x.shape[0]), len(self.streams))):
            torch.set_rng_state(self.streams[r])
            inner.zero_grad()
            out = inner.method(inner.model, x[part])
            backward_losses(out.losses, inner.groups)
            self.streams[r] = torch.get_rng_state()
            weight = len(part) / x.shape[0]
            for i, p in enumerate(params):
                if p.grad is not None:
                    g = p.grad * weight
                    summed[i] = g if summed[i] is None else summed[i] + g
            first = out if first is None else first
        for p, g in zip(params, summed, strict=True):
            p.grad = g
        for name in first.losses:
            inner.optimizers[name].step()
        inner.method.after_update()
        return StepResult(first)


def test_two_ranks_take_the_steps_of_one_process_computing_their_shards_in_turn(tmp_path: Path) -> None:
    assert launch(_train_entry, [str(tmp_path / "parallel"), "-1"], WORLD, "train") == 0
    torch.set_num_threads(1)
    trainer = build_trainer(CONFIG, tmp_path / "reference", data=DATA, log=_quiet, progress=False)
    trainer.step = SequentialShards(trainer.step, CONFIG.seed, WORLD)
    trainer.start()
    trainer.fit()
    parallel = _final_state(tmp_path / "parallel")
    assert parallel["train_state"]["step"] == 10 and parallel["world_size"] == WORLD
    for name, value in trainer.model.state_dict().items():
        # the same floating-point operations in the same order: equal bit for bit
        assert torch.equal(parallel["model"][name], value), name
    # the validation bound (its batches shared by the ranks) is the one process's too
    valid = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
              if '"valid"' in line] for run in ("parallel", "reference")]
    assert len(valid[0]) == 2 and [r["valid_bound"] for r in valid[0]] == [r["valid_bound"] for r in valid[1]]
    # and not trivially: the ranks drew different particles (their streams differ)
    assert not torch.equal(parallel["rng_ranks"][0]["torch"], parallel["rng_ranks"][1]["torch"])


def test_a_killed_rank_stops_the_job_and_resume_with_the_same_ranks_is_exact(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    code = launch(_train_entry, [str(killed), "7"], WORLD, "train", "Resume from the last checkpoint")
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    # The launcher names the killed rank, unless rank 0's exit (it lost its peer) reached it first.
    assert err[-1] in (f"deepem train: rank 1 of {WORLD} was killed by SIGKILL; the job was stopped. Resume from "
                       "the last checkpoint",
                       f"deepem train: rank 0 of {WORLD} lost another rank (killed or crashed); the job was "
                       "stopped. Resume from the last checkpoint")
    assert _final_state(killed)["train_state"]["step"] == 6  # the newest checkpoint before the kill
    assert launch(_train_entry, [str(killed), "-1", "resume"], WORLD, "train") == 0
    assert launch(_train_entry, [str(whole), "-1"], WORLD, "train") == 0
    resumed, uninterrupted = _final_state(killed), _final_state(whole)
    assert resumed["train_state"]["step"] == uninterrupted["train_state"]["step"] == 10
    for key in ("model", "optimizers", "rng_ranks"):
        assert _equal(resumed[key], uninterrupted[key]), key


def test_resume_with_another_number_of_processes_is_refused_with_the_way_out(
        tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert launch(_train_entry, [str(run), "-1"], WORLD, "train") == 0
    with pytest.raises(CheckpointError, match=f"trained by {WORLD} process.*resume it --nproc {WORLD}"):
        run_training(None, run, resume=True, data=DATA, overrides={"epochs": 3}, progress=False, log=_quiet)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return set(a) == set(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _sync_entry(argv: list[str]) -> int:
    """One rank: train argv[1] (with discriminator:steps=3 for AVB) for one epoch and save this rank's
    final parameters and method state to argv[0]/rankR.pt."""
    torch.set_num_threads(1)
    out, method = Path(argv[0]), argv[1]
    optim = {"discriminator": {"steps": 3}} if method == "avb" else {}
    config = tiny_config(method=method, particles=2, valid_every=0, epochs=1, optim=optim)
    parallel = Parallel.from_env()
    trainer = build_trainer(config, out, data=DATA, log=_quiet, progress=False, parallel=parallel)
    seed_rank_stream(config.seed, parallel)
    trainer.start()
    trainer.fit()
    torch.save({"model": trainer.model.state_dict(), "method": trainer.method.state_dict()},
               out / f"rank{parallel.rank}.pt")
    finish(parallel)
    return 0


@pytest.mark.parametrize("method", ["avb", "nvil"])
def test_groups_a_method_owns_and_extra_steps_are_averaged_so_ranks_stay_identical(tmp_path: Path,
                                                                                   method: str) -> None:
    # AVB: a discriminator group with 3 optimiser steps per batch; NVIL: a baseline group and
    # learning-signal moments fitted to the batch (averaged over ranks after each step).
    assert launch(_sync_entry, [str(tmp_path), method], WORLD, "train") == 0
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert _equal(states[0], states[1])
    assert any("discriminator" in k or "baseline" in k for k in states[0]["method"])


def _poison_entry(argv: list[str]) -> int:
    """One rank: CONFIG with nan_policy skip; at step 3 a NaN in rank 1's shard only (row 15 of 20)."""
    torch.set_num_threads(1)

    def hook(step: int, x: torch.Tensor) -> torch.Tensor:
        if step == 3:
            x = x.clone()
            x[15, 0] = float("nan")
        return x

    config = tiny_config(particles=2, valid_every=0, epochs=1, nan_policy="skip")
    parallel = Parallel.from_env()
    trainer = build_trainer(config, argv[0], data=DATA, log=_quiet, progress=False, batch_hook=hook,
                            parallel=parallel)
    seed_rank_stream(config.seed, parallel)
    trainer.start()
    trainer.fit()
    torch.save({"model": trainer.model.state_dict(), "skipped": trainer.state.skipped_steps},
               Path(argv[0]) / f"rank{parallel.rank}.pt")
    finish(parallel)
    return 0


def test_a_non_finite_value_on_one_rank_makes_every_rank_skip_the_step(tmp_path: Path) -> None:
    assert launch(_poison_entry, [str(tmp_path)], WORLD, "train") == 0
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert states[0]["skipped"] == states[1]["skipped"] == 1  # rank 0's shard was finite, yet it skipped too
    assert _equal(states[0]["model"], states[1]["model"])
