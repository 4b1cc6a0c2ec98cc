"""`cuda_graph` (`--cuda-graph`): declared once, recorded in config.json, refused in one line (exit 2)
where the graphed step cannot run, and otherwise taken by the trainer's loop instead of the eager step.
The wiring is tested on CPU with the stand-ins of tests/training/test_cuda_graph.py: the step's device
said to be CUDA (its tensors stay on CPU) and a capture that runs the step (a real one: on a GPU,
tests/test_device_paths.py). A graphed run must take the eager run's steps bitwise, and the loop's
non-finite policies must see its steps as they see the eager ones."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch
from host_reads import no_host_reads
from test_cuda_graph import stand_in_capture
from test_nonfinite import poison_at
from training_helpers import assert_trees_equal, binary_data, tiny_config

from deepem.cli import main
from deepem.declarations.run import RunSettings
from deepem.methods.registry import make_method
from deepem.models.config import ModelConfig, make_model
from deepem.settings import declared
from deepem.training import cuda_graph as cuda_graph_module
from deepem.training import step as step_module
from deepem.training.cuda_graph import CudaGraphError, GraphedStep, graphed_step
from deepem.training.devices import StepDevice
from deepem.training.steppers import SingleStepper
from deepem.training.trainer import Trainer
from deepem.training.vectorisable import VectorisationError, check_vectorisable
from deepem.workflows.assembly import build_trainer


def test_the_setting_is_declared_once_off_by_default_and_recorded():
    s = declared(RunSettings)["cuda_graph"]
    assert s.default is False and s.resume is True
    cfg = tiny_config(cuda_graph=True)
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))).cuda_graph is True


def trainer_for(tmp_path, **changes) -> Trainer:
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    return Trainer(model, make_method("iwae", particles=3), binary_data().train, tmp_path / "run",
                   tiny_config(**changes), progress=False, log=lambda s: None)


def test_on_a_cpu_device_it_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(CudaGraphError, match=r"^--cuda-graph needs a CUDA device \(--device cuda\); this run "
                                             r"trains on cpu$"):
        trainer_for(tmp_path, cuda_graph=True)
    assert not (tmp_path / "run").exists()
    out = tmp_path / "cli"
    assert main(["train", "--dataset", "digits", "--latent-dim", "4", "--hidden", "16", "--epochs", "1",
                 "--quiet", "--cuda-graph", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--cuda-graph needs a CUDA device" in err and "Traceback" not in err
    assert not out.exists()


@pytest.fixture
def on_cuda(monkeypatch):
    """Every TrainStep built afterwards says its device is CUDA (its tensors stay on CPU) and decides on
    the device; GraphedStep captures with the CPU stand-in."""
    monkeypatch.setattr(step_module, "step_device", lambda device: StepDevice("cuda", nullcontext, "device"))
    monkeypatch.setattr(cuda_graph_module, "_cuda_side_stream", nullcontext)
    built: list[GraphedStep] = []
    plain_init = GraphedStep.__init__

    def init(self, step, warmup=3, capture=None, side_stream=None):
        plain_init(self, step, warmup, capture or stand_in_capture(step), side_stream)
        built.append(self)
    monkeypatch.setattr(GraphedStep, "__init__", init)
    return built


def test_settings_it_cannot_serve_are_refused_in_one_line(tmp_path, on_cuda):
    with pytest.raises(CudaGraphError, match=r"^--cuda-graph replays a step that decides on the GPU, and this one "
                                             r"cannot: groups \['phi'\] take several steps per batch"):
        trainer_for(tmp_path, cuda_graph=True, optim={"phi": {"steps": 2}})
    with pytest.raises(CudaGraphError, match="^--cuda-graph and --compile cannot be used together"):
        trainer_for(tmp_path, cuda_graph=True, compile=True)
    assert not (tmp_path / "run").exists()
    step = trainer_for(tmp_path).step
    step.grad_sync = lambda params, bad: bad
    with pytest.raises(CudaGraphError, match="data-parallel ranks agree on a non-finite step through the host"):
        graphed_step(step)
    with pytest.raises(VectorisationError, match="--cuda-graph"):
        check_vectorisable(tiny_config(cuda_graph=True))


def states(trainer: Trainer) -> dict:
    return {"model": dict(trainer.model.state_dict()), "method": dict(trainer.method.state_dict()),
            "optimizers": {g: o.state_dict() for g, o in trainer.optimizers.items()}}


def fitted(tmp_path, name: str, hook=None, **changes) -> Trainer:
    trainer = build_trainer(tiny_config(epochs=3, valid_every=0, **changes), tmp_path / name, data=binary_data(),
                            log=lambda s: None, progress=False, batch_hook=hook)
    trainer.start()
    trainer.fit()
    return trainer


def test_the_loop_takes_the_graphed_step_and_trains_as_the_eager_step_bitwise(tmp_path, on_cuda, monkeypatch):
    eager = fitted(tmp_path, "eager")
    assert eager.graphed is None and not on_cuda
    calls: list[str] = []
    taken = GraphedStep.__call__

    def call(self, x, mask=None):
        result = taken(self, x, mask)
        calls.append(self.last)
        return result
    monkeypatch.setattr(GraphedStep, "__call__", call)
    graphed = fitted(tmp_path, "graphed", cuda_graph=True)
    assert on_cuda == [graphed.graphed] and graphed.step.decision == "device"
    # 5 batches of 20 an epoch, 3 epochs: warm-up, capture, then replays of the one batch shape
    assert calls == ["warm-up"] * 3 + ["capture"] + ["replay"] * 11
    assert_trees_equal(states(eager), states(graphed))
    assert json.loads((tmp_path / "graphed" / "config.json").read_text())["cuda_graph"] is True


def test_a_non_finite_replay_is_skipped_and_reported_with_its_step_at_the_record_point(tmp_path, on_cuda,
                                                                                     monkeypatch):
    taken = SingleStepper.step

    def guarded(self, batch):  # (no host read between record points, replays included)
        with no_host_reads():
            return taken(self, batch)
    monkeypatch.setattr(SingleStepper, "step", guarded)
    trainer = fitted(tmp_path, "graphed", cuda_graph=True, nan_policy="skip", hook=poison_at({7}))
    skips = [r for r in trainer.run.read_metrics() if r["kind"] == "nonfinite"]
    assert [(r["step"], r["epoch"], r["batch"]) for r in skips] == [(7, 1, 2)]
    assert skips[0]["what"].startswith("input batch (1 of 320 non-finite: 1 NaN")
    assert trainer.state.skipped_steps == 1
    for opt in trainer.optimizers.values():  # Adam counted only the updates applied
        assert all(int(s["step"]) == 14 for s in opt.state.values())


def test_a_graphed_step_s_gradient_problem_is_named_from_what_the_replay_kept(on_cuda):
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    step = step_module.TrainStep(model, make_method("iwae", particles=3), lr=1e-2)
    step.keep_evidence = True
    graphed = graphed_step(step)
    x = binary_data().train[:20]
    for _ in range(4):
        graphed(x)
    hook = model.decoder[0].weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    bad = graphed(x)
    hook.remove()
    assert graphed.last == "replay"
    graphed(x)  # a later replay: the diagnosis reads what the bad one kept
    assert bad.settled().problem == ("gradient of parameter decoder.0.weight (shape (16, 4), group 'theta'; "
                                     "not finite)")
