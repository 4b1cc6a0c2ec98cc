"""The step's device choices (training/devices.py), made once: the non-finite decision on the host (CPU's
default) or on the device (CUDA's). The device path runs on CPU tensors too, so it is tested here: it
takes the host path's steps bitwise, skips a non-finite step through the fused Adam kernels' found-inf
without any host read, and its settled result says what the host path says. (The loop's policies under
both paths: tests/training/test_nonfinite.py; the same on a GPU with CUDA's own sync check:
tests/test_device_paths.py.)"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch
from training_helpers import assert_trees_equal, binary_data, tiny_config

from deepem.methods.base import MethodOutput
from deepem.methods.iwae import IWAE
from deepem.methods.registry import make_method
from deepem.models.config import ModelConfig, make_model
from deepem.training import step as step_module
from deepem.training.devices import StepDevice, step_device
from deepem.training.optim import GroupOptim
from deepem.training.step import TrainStep
from deepem.workflows.assembly import build_trainer

#: every way Python code reads a tensor's value on the host (each one waits for the device on CUDA)
HOST_READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy")


@contextmanager
def no_host_reads(monkeypatch):
    """Any host read of a tensor's value inside the block fails the test."""
    def refuse(name):
        def read(*args, **kwargs):
            raise AssertionError(f"host read Tensor.{name} in the device path")
        return read
    with monkeypatch.context() as m:
        for name in HOST_READS:
            m.setattr(torch.Tensor, name, refuse(name))
        yield


def build(decision: str, method: str = "iwae", seed: int = 0, **options) -> tuple[TrainStep, torch.nn.Module]:
    torch.manual_seed(seed)
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    bound = make_method(method, particles=3, **options)
    bound.bind(model)  # (a method with its own networks, NVIL's baseline, builds them for the model)
    return TrainStep(model, bound, lr=1e-2, decision=decision), model


def states(step: TrainStep) -> dict:
    return {"model": copy.deepcopy(step.model.state_dict()), "method": copy.deepcopy(step.method.state_dict()),
            "optimizers": {g: copy.deepcopy(o.state_dict()) for g, o in step.optimizers.items()}}


def test_the_path_is_chosen_once_from_the_device_and_the_step():
    assert step_device("cpu").decision == "host" and step_device("cuda").decision == "device"
    assert step_device("meta").decision == "host"
    step, _ = build(None)
    assert step.decision == "host"
    assert build("device")[0].decision == "device"
    step.grad_sync = lambda params, bad: bad  # data-parallel ranks agree on the host
    assert step.decision == "host"
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    method = make_method("iwae", particles=3)
    groups = {"theta": GroupOptim(lr=1e-3), "phi": GroupOptim(lr=1e-3, steps=2)}
    with pytest.raises(ValueError, match="take several steps per batch"):
        TrainStep(model, method, groups, decision="device")
    assert TrainStep(model, method, groups).decision == "host"


@pytest.mark.parametrize("method,options", [("iwae", {}), ("iwem", {"alpha_every": 1}), ("nvil", {})])
def test_the_device_decision_takes_the_host_decision_s_steps_bitwise(method, options, monkeypatch):
    x = binary_data().train[:20]
    host, _ = build("host", method, **options)
    device, _ = build("device", method, **options)
    for seed in range(3):
        torch.manual_seed(seed)
        assert not host(x).problem
        torch.manual_seed(seed)
        assert not device(x).settled().problem
    assert_trees_equal(states(host), states(device))


#: methods whose own forward pass reads a value on the host, so that their step waits for the device once
#: (and cannot be captured as a CUDA graph): IWEM's annealing counter, AIWAE's and REM's own numbers
READ_ON_THE_HOST = {"aiwae", "iwem", "iwem-woa", "iwem-woo", "miss-iwem", "miss-iwem-woa", "rem-v1", "rem-v2"}


@pytest.mark.parametrize("method", ["avb", "iwae", "iwae-dreg", "iwae-stl", "iwavb", "miwae", "nvil", "rws", "vae",
                                    "vimco", "wake-sleep"])
def test_a_step_on_the_device_reads_nothing_on_the_host(method, monkeypatch):
    assert method not in READ_ON_THE_HOST
    step, _ = build("device", method)
    x = binary_data().train[:20]
    step(x)  # (the first step creates the optimisers' state)
    with no_host_reads(monkeypatch):
        result = step(x)
    assert result.nonfinite is not None and not result.settled().problem


def test_a_non_finite_gradient_is_skipped_on_the_device_without_a_host_read(monkeypatch):
    # NVIL: its running mean and variance (buffers) move in after_update; the step must undo that
    x = binary_data().train[:20]
    step, model = build("device", "nvil")
    step(x)  # one good step: Adam's state exists and the running moments moved
    before = states(step)
    weight = model.decoder[0].weight
    hook = weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    with no_host_reads(monkeypatch):
        result = step(x)
    hook.remove()
    assert_trees_equal(before, states(step))  # parameters, Adam's moments and step counts, the method's buffers
    settled = result.settled()
    assert settled.output is None and settled.problem.startswith("gradient of parameter decoder.0.weight")
    assert all(p.grad is None for params in step.groups.values() for p in params)
    torch.manual_seed(3)
    assert not step(x).settled().problem  # and the next finite step is applied
    assert not torch.equal(before["model"]["decoder.0.weight"], model.decoder[0].weight)


def test_a_non_finite_batch_is_diagnosed_as_the_host_path_does():
    x = binary_data().train[:20].clone()
    x[1, 2] = float("inf")
    host, _ = build("host")
    device, _ = build("device")
    assert device(x).settled().problem == host(x).problem
    assert host(x).problem.startswith("input batch (1 of 320 non-finite")


class SteepIWAE(IWAE):
    """IWAE with its losses times 1e4: gradients large enough for a big loss scale to overflow float32."""

    def forward(self, *args, **kwargs) -> MethodOutput:
        out = super().forward(*args, **kwargs)
        out.losses = {g: loss * 1e4 for g, loss in out.losses.items()}
        return out


def test_an_overflowing_loss_scale_is_skipped_and_lowered_on_the_device(monkeypatch):
    x = binary_data().train[:20]
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    step = TrainStep(model, SteepIWAE(particles=3), lr=1e-2, decision="device")
    step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127)  # the scaled gradients overflow
    step(x)  # (the first step is skipped too: it creates Adam's state, all zeros, which a host skip does not)
    assert step.scaler.get_scale() == 2.0 ** 126
    before = states(step)
    with no_host_reads(monkeypatch):
        result = step(x)
    assert_trees_equal(before, states(step))
    settled = result.settled()
    assert settled.skipped and not settled.problem
    assert step.scaler.get_scale() == 2.0 ** 125


def test_a_run_deciding_on_the_device_trains_and_resumes_as_the_host_deciding_one_bitwise(tmp_path, monkeypatch):
    def trainer(folder, epochs: int, decision: str):
        cpu = step_device("cpu")
        monkeypatch.setattr(step_module, "step_device", lambda device: StepDevice(cpu.kind, cpu.region, decision))
        built = build_trainer(tiny_config(epochs=epochs, valid_every=0), folder, data=binary_data(),
                              log=lambda s: None, progress=False)
        assert built.step.decision == decision
        return built

    finals = {}
    for decision in ("host", "device"):
        whole = trainer(tmp_path / decision / "whole", 2, decision)
        whole.start()
        whole.fit()
        part = trainer(tmp_path / decision / "part", 1, decision)
        part.start()
        part.fit()
        resumed = trainer(tmp_path / decision / "part", 2, decision)
        assert resumed.resume()
        resumed.fit()
        assert_trees_equal(states(whole.step), states(resumed.step))
        finals[decision] = states(whole.step)
    assert_trees_equal(finals["host"], finals["device"])
