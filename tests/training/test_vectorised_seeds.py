"""Vectorised seeds: S seeds trained as one batched computation end where S single-seed runs end.

Equality is to float tolerance, not bitwise: the stacked (batched) matmuls and their backward sum in
another order than one seed's. Everything that decides a run (initial weights, data order, the ε of
every particle, Adam's state) is the single run's, so the gap stays at rounding level after 20 steps."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from training_helpers import tiny_config

from deepem.data.base import DataSplits
from deepem.methods import make_method
from deepem.models.config import ModelConfig, make_model
from deepem.training.checkpoint_file import list_checkpoints, load_checkpoint
from deepem.training.config import TrainConfig
from deepem.training.guards import NonFiniteError
from deepem.training.rng import capture_rng_state, seed_everything
from deepem.training.run import RunFolder
from deepem.training.signals import StopRequest
from deepem.training.trainer import Trainer
from deepem.training.vectorisable import VectorisationError
from deepem.training.vectorised import SeedStepper, train_seeds_together
from deepem.workflows.seeds import seed_folder, train_seeds
from deepem.workflows.train import run_training


def grey_data(dynamic: bool = True) -> DataSplits:
    """130 grey-level training points (dynamic: binarised afresh each epoch, per-seed data), 40 others."""
    gen = torch.Generator().manual_seed(3)
    prototypes = torch.rand(4, 16, generator=gen)
    labels = torch.randint(0, 4, (170,), generator=gen)
    grey = (0.8 * prototypes[labels] + 0.2 * torch.rand(170, 16, generator=gen)).clamp(0, 1)
    binary = torch.bernoulli(grey[130:], generator=gen)
    if not dynamic:
        return DataSplits("grey-synthetic", grey[:130], grey[130:150], grey[150:], "gaussian")
    return DataSplits("grey-synthetic", grey[:130], binary[:20], binary[20:], "bernoulli",
                      dynamic_binarization=True)


def config(method: str = "iwae", **changes: object) -> TrainConfig:
    # 130 points in batches of 20: 7 steps an epoch, the last one of 10 points; 3 epochs = 21 steps.
    fields = dict(dataset="grey-synthetic", method=method, particles=4, epochs=3, train_limit=None, valid_limit=None,
                  valid_every=2, checkpoint_every_steps=5, checkpoint_every=1)
    fields.update(changes)
    return tiny_config(**fields)


def final_checkpoint(run_dir):
    return load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])


def assert_close(a, b, path=""):
    """Nested dicts / lists of tensors and numbers equal to float tolerance."""
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype, path
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m: f"{path}: {m}")
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{path} keys differ: {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize(("method", "likelihood", "per_call"), [
    ("vae", None, None), ("iwae", None, 2), ("iwae-stl", "gaussian", None)])
def test_each_seed_equals_its_single_run(tmp_path, method, likelihood, per_call):
    """per_call 2: the 3 seeds in two vmapped calls (2 + 1), as on CPU with large K B D."""
    # Grey data with the Gaussian likelihood: one data tensor for all seeds (sliced by train_limit per
    # trainer), gathered once per step; binarised data: each seed's own, gathered seed by seed.
    data, seeds = grey_data(dynamic=likelihood is None), [3, 8, 21]
    model = ModelConfig(latent_dim=4, hidden=[16], likelihood=likelihood)
    limit = None if likelihood is None else 130
    outcome = train_seeds(config(method, model=model, train_limit=limit), seeds, tmp_path / "group", data=data,
                          progress=False, log=lambda _: None, seeds_per_call=per_call)
    assert outcome.exit_code == 0 and [s["steps"] for s in outcome.summary["seeds"]] == [21] * 3
    for seed in seeds:
        alone = tmp_path / f"alone-{seed}"
        assert run_training(config(method, seed=seed, model=model, train_limit=limit), alone, data=data, progress=False,
                            log=lambda _: None, handle_signals=False) == 0
        grouped = seed_folder(tmp_path / "group", seed)
        assert json.loads((grouped / "config.json").read_text()) == json.loads((alone / "config.json").read_text())
        assert [p.name for p in list_checkpoints(grouped / "checkpoints")] == \
            [p.name for p in list_checkpoints(alone / "checkpoints")]
        mine, theirs = final_checkpoint(grouped), final_checkpoint(alone)
        # parameters after 21 steps, Adam moments, learning rates, step counts, validation bounds, RNG states
        assert_close(mine["model"], theirs["model"], "model")
        assert_close(mine["optimizers"], theirs["optimizers"], "optimizers")
        assert_close(mine["rng"], theirs["rng"], "rng")
        assert_close({k: v for k, v in mine["train_state"].items() if k != "elapsed"},
                     {k: v for k, v in theirs["train_state"].items() if k != "elapsed"}, "train_state")
        # the seeds really differ (a group that trained one seed S times would pass the checks above for one)
        first = final_checkpoint(seed_folder(tmp_path / "group", seeds[0]))["model"]
        assert seed == seeds[0] or not any(torch.equal(v, first[k]) for k, v in mine["model"].items()
                                           if v.is_floating_point() and v.numel() > 1)
        strip = [{k: v for k, v in r.items() if k != "points_per_sec"}
                 for r in (json.loads(line) for line in (grouped / "metrics.jsonl").read_text().splitlines())]
        ref = [{k: v for k, v in r.items() if k != "points_per_sec"}
               for r in (json.loads(line) for line in (alone / "metrics.jsonl").read_text().splitlines())]
        assert_close(strip, ref, "metrics")


def test_a_seed_resumes_alone_from_a_group_checkpoint(tmp_path):
    """A group checkpoint is a single run's: resuming it alone for one more epoch ends where the single run
    trained 4 epochs ends."""
    data = grey_data()
    quiet = dict(data=data, progress=False, log=lambda _: None)
    assert train_seeds(config("iwae"), [4, 5], tmp_path / "group", **quiet).exit_code == 0
    grouped = seed_folder(tmp_path / "group", 5)
    assert run_training(None, grouped, resume=True, overrides={"epochs": 4}, handle_signals=False, **quiet) == 0
    assert run_training(config("iwae", seed=5, epochs=4), tmp_path / "alone", handle_signals=False, **quiet) == 0
    assert_close(final_checkpoint(grouped)["model"], final_checkpoint(tmp_path / "alone")["model"])


@pytest.mark.parametrize(("changes", "named"), [
    (dict(method="iwae-dreg"), "method 'iwae-dreg'"),
    (dict(method="rws"), "method 'rws'"),
    (dict(nan_policy="skip"), "nan_policy 'skip'"),
    (dict(patience=2), r"early stopping \(patience 2\)"),
])
def test_unsupported_settings_are_refused_before_anything_is_written(tmp_path, changes, named):
    with pytest.raises(VectorisationError, match=named) as err:
        train_seeds(config(**{"method": "iwae", **changes}), [0, 1], tmp_path / "group", data=grey_data(),
                    progress=False, log=lambda _: None)
    assert "methods vae, iwae, iwae-stl with" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "group").exists()


def test_existing_seed_folders_are_not_overwritten(tmp_path):
    (tmp_path / "group" / "seed-1").mkdir(parents=True)
    (tmp_path / "group" / "seed-1" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="already exists"):
        train_seeds(config("iwae"), [0, 1], tmp_path / "group", data=grey_data(), progress=False,
                    log=lambda _: None)
    assert not (tmp_path / "group" / "seed-0").exists()
    assert (tmp_path / "group" / "seed-1" / "mine.txt").read_text() == "keep"


class StopAfter(StopRequest):
    """A stop request (as Ctrl-C sets it) that fires by itself at the n-th time the loop asks."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.asked, self.n = 0, n

    @property
    def requested(self) -> bool:
        self.asked += 1
        if self.asked >= self.n:
            self.signum = signal.SIGINT
        return self.signum is not None


def test_a_stopped_group_checkpoints_every_seed_and_each_resumes_alone(tmp_path):
    data = grey_data()
    quiet = dict(data=data, progress=False, log=lambda _: None)
    outcome = train_seeds(config("vae"), [1, 2], tmp_path / "group", stop=StopAfter(10), handle_signals=False,
                          **quiet)
    assert outcome.exit_code == 130
    for seed in (1, 2):  # asked before each of 7 steps, at the epoch end, then before steps 8, 9: stopped at 8
        assert list_checkpoints(seed_folder(tmp_path / "group", seed) / "checkpoints")[-1].name.endswith("8.pt")
    grouped = seed_folder(tmp_path / "group", 2)
    assert run_training(None, grouped, resume=True, handle_signals=False, **quiet) == 0
    assert run_training(config("vae", seed=2), tmp_path / "alone", handle_signals=False, **quiet) == 0
    assert_close(final_checkpoint(grouped)["model"], final_checkpoint(tmp_path / "alone")["model"])
    strip = [{k: v for k, v in r.items() if k != "points_per_sec"} for r in RunFolder(grouped).read_metrics()]
    ref = [{k: v for k, v in r.items() if k != "points_per_sec"} for r in RunFolder(tmp_path / "alone").read_metrics()]
    assert_close(strip, ref, "metrics")


def test_a_non_finite_step_of_one_seed_stops_the_group_with_nothing_applied(tmp_path):
    trainers, states = [], []
    x = torch.bernoulli(torch.full((40, 16), 0.3), generator=torch.Generator().manual_seed(0))
    for seed in (0, 1):
        seed_everything(seed)
        model = make_model(ModelConfig(latent_dim=4, hidden=[16], likelihood="bernoulli"), 16)
        trainers.append(Trainer(model, make_method("iwae", particles=3), x, tmp_path / f"s{seed}",
                                config(seed=seed, dataset="custom"), progress=False, log=lambda _: None))
        states.append(capture_rng_state())
    stepper = SeedStepper(trainers, states)
    for t in trainers:
        t.start()
    name = next(iter(stepper.params))
    with torch.no_grad():
        stepper.params[name][1, 0] = float("nan")  # seed 1's first layer poisoned
    before = {n: p.detach().clone() for n, p in stepper.params.items()}
    with pytest.raises(NonFiniteError, match="non-finite loss or log-weights of seed 1 at .*epoch 0, batch 0 "
                                             r"of 2 \(step 0\).*continue each seed alone"):
        train_seeds_together(stepper, progress=False)
    for n, p in stepper.params.items():  # nothing applied, to either seed
        assert torch.equal(p.detach().nan_to_num(), before[n].nan_to_num())
    for t in trainers:  # and only the step-0 checkpoints were written
        assert [c.name for c in list_checkpoints(t.run.checkpoints)] == ["ckpt-000000000.pt"]
