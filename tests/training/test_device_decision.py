"""The step's device choices (training/devices.py), made once: the non-finite decision on the host (CPU's
default) or on the device (CUDA's). The device path runs on CPU tensors too, so it is tested here: it
takes the host path's steps bitwise, skips a non-finite step through the fused Adam kernels' found-inf
without any host read, and its settled result says what the host path says. (The loop's policies under
both paths: tests/training/test_nonfinite.py; the same on a GPU with CUDA's own sync check:
tests/test_device_paths.py.)"""

from __future__ import annotations

import copy

import pytest
import torch
from host_reads import HostReadError, no_host_reads
from training_helpers import assert_trees_equal, binary_data, tiny_config

from deepem.methods.base import MethodOutput, compatible_methods
from deepem.methods.iwae import IWAE
from deepem.methods.registry import METHODS, make_method
from deepem.models.config import ModelConfig, make_model
from deepem.training import step as step_module
from deepem.training.devices import StepDevice, step_device
from deepem.training.optim import GroupOptim
from deepem.training.step import TrainStep
from deepem.workflows.assembly import build_trainer


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


@pytest.mark.parametrize("method,options", [("iwae", {}), ("iwem", {"alpha_every": 1, "alpha_step": 0.3}), ("nvil", {}),
                                            ("aiwae", {}), ("rem-v1", {}),
                                            ("rem-v2", {"covariance": "weighted", "jitter": 0.0})])
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


#: methods whose training step must read a value on the host (none: each read there was replaced by
#: device-side tensor ops; a method added here must say why its read is inherent)
READ_ON_THE_HOST: dict[str, str] = {}

#: the missing-data methods also run with a mask (their masked forward passes differ)
MASKED = {"miwae", "miss-iwem", "miss-iwem-woa"}

#: options that take other code paths than the defaults: (method, options)
VARIANTS = [("iwem", {"alpha_every": 1, "alpha_step": 0.3, "proposal_std_scale": 1.5}),
            ("iwem-woo", {"proposal_std_scale": 1.5, "p_samples": 2}),
            ("miss-iwem", {"completion": "mean", "alpha_unit": "epochs"}),
            ("miss-iwem", {"completion": "zero"}),
            ("rem-v1", {"covariance": "weighted", "jitter": 0.0}),
            ("rem-v2", {"phi_proposal": "s"}),
            ("aiwae", {"schedule": "sigmoid", "temperatures": 3})]


def guarded_steps(method: str, options: dict, masked: bool) -> None:
    """Two full steps (forward, backward, optimisers, after_update) under the device decision, the second
    (after the first created the optimisers' state) with every host read refused."""
    step, _ = build("device", method, **options)
    x = binary_data().train[:20]
    mask = None
    if masked:
        mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < 0.7
        x = x.masked_fill(~mask, float("nan"))
    step(x, mask)
    with no_host_reads():
        result = step(x, mask)
    assert result.nonfinite is not None and not result.settled().problem


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_step_on_the_device_reads_nothing_on_the_host(method):
    if method in READ_ON_THE_HOST:
        pytest.skip(READ_ON_THE_HOST[method])
    guarded_steps(method, {}, masked=False)
    if method in MASKED:
        guarded_steps(method, {}, masked=True)


@pytest.mark.parametrize("method,options", VARIANTS, ids=[f"{m}-{'-'.join(o)}" for m, o in VARIANTS])
def test_the_other_code_paths_of_a_step_read_nothing_on_the_host_either(method, options):
    guarded_steps(method, options, masked=method in MASKED)


#: models whose networks and densities differ from the default one's: (name, config)
OTHER_MODELS = [("bernoulli-latents", ModelConfig(latent_dim=4, hidden=[16], latent="bernoulli")),
                ("two-layer", ModelConfig(architecture="mlp-2layer", hidden=[16])),
                ("sbn", ModelConfig(architecture="sbn", latent="bernoulli", latent_dim=None,
                                    architecture_options={"layer_sizes": [4, 4]})),
                ("implicit-encoder", ModelConfig(latent_dim=4, hidden=[16], encoder="implicit")),
                ("gaussian-likelihood", ModelConfig(latent_dim=4, hidden=[16], likelihood="gaussian"))]


@pytest.mark.parametrize("config", [c for _, c in OTHER_MODELS], ids=[n for n, _ in OTHER_MODELS])
def test_every_method_s_step_reads_nothing_on_the_host_with_other_models(config):
    x = binary_data().train[:20]
    methods = compatible_methods(make_model(config, 16))
    assert methods
    for method in methods:
        torch.manual_seed(0)
        model = make_model(config, 16)
        bound = make_method(method, particles=3)
        bound.bind(model)
        step = TrainStep(model, bound, lr=1e-2, decision="device")
        step(x)
        with no_host_reads():
            result = step(x)
        assert not result.settled().problem, method


def test_the_guard_refuses_every_kind_of_host_read():
    t = torch.tensor([1.0, 2.0])
    reads = [lambda: bool(t[0]), lambda: float(t[0]), lambda: int(t[0]), lambda: t[0].item(),
             lambda: t.tolist(), lambda: t.numpy(), lambda: t.nonzero(), lambda: t[t > 1],
             lambda: t.masked_select(t > 1), lambda: torch.unique(t), lambda: torch.equal(t, t),
             lambda: torch.where(t > 1), lambda: [0, 1, 2][t[0].long()], lambda: f"{t}",
             lambda: t.repeat_interleave(torch.tensor([1, 2]))]
    for read in reads:
        with no_host_reads(), pytest.raises(HostReadError):
            read()
    with no_host_reads():  # what a device-side step does instead
        torch.where(t > 1, t, 0.0).sum().clamp(max=1.0)


def test_a_non_finite_gradient_is_skipped_on_the_device_without_a_host_read(monkeypatch):
    # NVIL: its running mean and variance (buffers) move in after_update; the step must undo that
    x = binary_data().train[:20]
    step, model = build("device", "nvil")
    step(x)  # one good step: Adam's state exists and the running moments moved
    before = states(step)
    weight = model.decoder[0].weight
    hook = weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    with no_host_reads():
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
    with no_host_reads():
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
