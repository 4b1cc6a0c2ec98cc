"""`tensorboard = True` (deepem train --tensorboard): the event files in RUN/tensorboard/ read back with
TensorBoard's own reader: the tags, the steps (each once, in order, across an interrupted and resumed
run), the values (those of metrics.jsonl) and the images, one board per seed of a vectorised group; the
run itself computes exactly what it computes without them; and without the package the flag is refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from training_helpers import binary_data, tiny_config  # noqa: E402

from deepem import cli  # noqa: E402
from deepem.training.distributed import Parallel  # noqa: E402
from deepem.training.tensorboard import FOLDER, Watched  # noqa: E402
from deepem.training.trainer import Trainer  # noqa: E402
from deepem.workflows.assembly import assemble, build_trainer  # noqa: E402
from deepem.workflows.seeds import train_seeds  # noqa: E402
from deepem.workflows.train import train_run  # noqa: E402

TRAIN_TAGS = {"loss/theta", "loss/phi", "train/elbo", "train/iw_bound", "train/ess_fraction",
              "train/points_per_sec", "lr/theta", "lr/phi", "train/skipped_steps"}
VALID_TAGS = {"valid/bound", "valid/stderr", "valid/active_units", "valid/kl_to_prior"}
IMAGE_TAGS = {"images/samples", "images/reconstructions"}


class Crash(Exception):
    """A failure in the middle of an epoch (as a killed process, but with the events already flushed)."""


def board(run: Path, purge: bool = True) -> EventAccumulator:
    events = EventAccumulator(str(run / FOLDER), size_guidance={"scalars": 0, "images": 0},
                              purge_orphaned_data=purge)
    events.Reload()
    return events


def steps(events: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in events.Scalars(tag)]


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_a_run_writes_every_group_s_curves_the_validation_and_its_images(tmp_path):
    run = tmp_path / "run"
    assert train_run(tiny_config(tensorboard=True), run, progress=False, log=lambda _: None).exit_code == 0
    events = board(run)
    assert set(events.Tags()["scalars"]) == TRAIN_TAGS | VALID_TAGS
    assert set(events.Tags()["images"]) == IMAGE_TAGS
    train, valid = records(run, "train"), records(run, "valid")
    assert [r["step"] for r in train] == [5, 10]  # 5 steps an epoch: a window at each epoch's end
    for tag in TRAIN_TAGS - {"lr/theta", "lr/phi", "train/skipped_steps"}:
        name = tag.split("/")[1]
        key = name if tag.startswith("train/") else f"loss_{name}"
        assert steps(events, tag) == [5, 10]
        assert [e.value for e in events.Scalars(tag)] == pytest.approx([r[key] for r in train], rel=1e-6)
    assert [e.value for e in events.Scalars("lr/phi")] == pytest.approx([3e-3, 3e-3])
    assert [e.value for e in events.Scalars("train/skipped_steps")] == [0, 0]
    assert [e.value for e in events.Scalars("valid/bound")] == pytest.approx([r["valid_bound"] for r in valid],
                                                                          rel=1e-6)
    assert steps(events, "valid/kl_to_prior") == [5, 10]
    for tag in IMAGE_TAGS:
        assert [i.step for i in events.Images(tag)] == [5, 10]  # one image a validation


def test_an_interrupted_and_resumed_run_has_each_point_once_in_order(tmp_path):
    """Checkpoints every 2 epochs of 5 steps; a crash at step 17 comes after the points of step 15 were
    written (past the checkpoint of step 10). The resumed run writes steps 15 and 20 again: TensorBoard
    shows each step once, the values the resumed run computed (those metrics.jsonl keeps)."""
    config = tiny_config(tensorboard=True, epochs=4, checkpoint_every=2, checkpoint_every_steps=0)
    run = tmp_path / "run"

    def crash_at_17(step, x):
        if step == 17:
            raise Crash
        return x

    with pytest.raises(Crash):
        train_run(config, run, progress=False, log=lambda _: None, batch_hook=crash_at_17, handle_signals=False)
    assert steps(board(run), "valid/bound") == [5, 10, 15]  # written past the checkpoint (step 10)
    assert train_run(None, run, resume=True, progress=False, log=lambda _: None).exit_code == 0

    events = board(run)
    for tag in TRAIN_TAGS | VALID_TAGS:
        assert steps(events, tag) == [5, 10, 15, 20], tag
    for tag in IMAGE_TAGS:
        assert [i.step for i in events.Images(tag)] == [5, 10, 15, 20]
    train = records(run, "train")
    assert [e.value for e in events.Scalars("loss/theta")] == pytest.approx([r["loss_theta"] for r in train],
                                                                         rel=1e-6)
    # the files do hold step 15 twice: TensorBoard's purge at the resumed writer's start removes the first
    raw = steps(board(run, purge=False), "valid/bound")
    assert sorted(raw) == [5, 10, 15, 15, 20]


def test_the_run_computes_the_same_with_or_without_tensorboard(tmp_path):
    """Drawing images and KL after each validation draws from generators of its own: metrics.jsonl is the
    same (to the bit: json of the same floats), timings aside."""
    def trained(flag: bool) -> list[dict]:
        run = tmp_path / f"run-{flag}"
        train_run(tiny_config(tensorboard=flag), run, progress=False, log=lambda _: None)
        return [{k: v for k, v in r.items() if k != "points_per_sec"} for r in records(run, "train")
                + records(run, "valid")]

    assert trained(True) == trained(False)
    assert not (tmp_path / "run-False" / FOLDER).exists()


def test_vectorised_seeds_write_one_board_per_seed(tmp_path):
    outcome = train_seeds(tiny_config(tensorboard=True), [0, 1], tmp_path / "group", progress=False,
                          log=lambda _: None, handle_signals=False)
    assert outcome.exit_code == 0
    bounds = []
    for seed in (0, 1):
        run = tmp_path / "group" / f"seed-{seed}"
        events = board(run)
        assert steps(events, "valid/bound") == [5, 10]
        assert [e.value for e in events.Scalars("valid/bound")] == pytest.approx(
            [r["valid_bound"] for r in records(run, "valid")], rel=1e-6)
        assert [i.step for i in events.Images("images/samples")] == [5, 10]
        bounds.append(events.Scalars("valid/bound")[-1].value)
    assert bounds[0] != bounds[1]  # each seed's own curve, not one run's twice


def test_without_the_package_the_flag_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: importing it fails
    out = tmp_path / "run"
    code = cli.main(["train", "--tensorboard", "--epochs", "1", "--train-limit", "40", "--quiet", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'deepem[tensorboard]'" in err[0], err
    assert not out.exists()  # refused before anything was written


def test_a_rollback_replaces_the_points_logged_after_its_checkpoint(tmp_path):
    """A NaN batch at step 17 rolls the run back to the checkpoint of step 10 with half the learning rate:
    the points of step 15 logged before are replaced by those of the rolled-back run (its halved rate)."""
    config = tiny_config(tensorboard=True, epochs=4, checkpoint_every=2, checkpoint_every_steps=0,
                         nan_policy="rollback")
    poisoned: list[int] = []

    def nan_once_at_17(step, x):
        if step == 17 and not poisoned:
            poisoned.append(step)
            return x * float("nan")
        return x

    run = tmp_path / "run"
    assert train_run(config, run, progress=False, log=lambda _: None, batch_hook=nan_once_at_17,
                     handle_signals=False).exit_code == 0
    events = board(run)
    assert steps(events, "valid/bound") == [5, 10, 15, 20]
    assert [e.value for e in events.Scalars("lr/theta")] == pytest.approx([3e-3, 3e-3, 1.5e-3, 1.5e-3])
    assert sorted(steps(board(run, purge=False), "lr/theta")) == [5, 10, 15, 15, 20]


@pytest.mark.parametrize(("rank", "writes"), [(0, True), (1, False)])
def test_in_a_data_parallel_job_only_rank_0_logs(tmp_path, rank, writes):
    trainer = build_trainer(tiny_config(tensorboard=True), tmp_path / "run", data=binary_data(),
                            log=lambda _: None, progress=False, parallel=Parallel(rank, 2))
    assert (trainer.logger is not None) is writes


def test_a_watcher_that_draws_from_the_global_generators_changes_nothing_the_run_computes(tmp_path):
    """The logger puts every generator back after the watcher (and the model in training mode): a watcher
    that draws from torch's global generator leaves the run's numbers as they are without one."""
    def trained(watch) -> list[dict]:
        a = assemble(tiny_config(tensorboard=True), data=binary_data())
        run = tmp_path / f"run-{watch is None}"
        trainer = Trainer(a.model, a.method, a.train, run, a.config, validate=a.validate, progress=False,
                          log=lambda _: None, watch=watch)
        trainer.start()
        trainer.fit()
        return [{k: v for k, v in r.items() if k != "points_per_sec"} for r in records(run, "train")
                + records(run, "valid")]

    def noisy(model) -> Watched:
        model.eval()
        return Watched(scalars={"noise": float(torch.rand(()))})

    assert trained(noisy) == trained(None)
    assert steps(board(tmp_path / "run-False"), "valid/noise") == [5, 10]
