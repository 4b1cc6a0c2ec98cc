"""The same code runs on CPU and CUDA: the device is a setting, never a call in library code. The CUDA
half runs where a GPU is present (skipped on CPU-only machines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from deepem.methods import METHODS, make_method
from deepem.methods.base import device_generator
from deepem.models import ModelConfig, make_model
from deepem.models.bernoulli_head import bernoulli_linear_log_prob

SRC = Path(__file__).resolve().parents[1] / "src" / "deepem"
# (`torch.device("cuda", torch.cuda.current_device())` for NCCL's communication buffers is allowed: it
# follows the device the rank was given)
HARD_CODED = re.compile(r"\.cuda\(|device=[\"']cuda[\"'\d:]|torch\.device\([\"']cuda[\"'\d:]*\)")


def test_no_hard_coded_cuda_in_library_code():
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if HARD_CODED.search(line)]
    assert not offenders, f"device set in code instead of from the settings: {offenders}"


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_fused_output_layer_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((4, 30), 0.3), generator=g)
    h = torch.randn(6, 4, 8, generator=g, requires_grad=True)
    weight, bias = torch.randn(30, 8, generator=g, requires_grad=True), torch.randn(30, generator=g)
    cpu = bernoulli_linear_log_prob(x, h, weight, bias)
    gpu = bernoulli_linear_log_prob(x.cuda(), h.detach().cuda().requires_grad_(), weight.detach().cuda(),
                                    bias.cuda())
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-3)


def test_the_run_generator_on_cpu_is_torchs_default_one():
    assert device_generator(torch.device("cpu")) is torch.default_generator


@cuda
def test_the_run_generator_on_cuda_gives_the_global_draws():
    """The trainer passes the device's default CUDA generator: the numbers of generator=None."""
    device = torch.device("cuda", 0)
    assert device_generator(device) is torch.cuda.default_generators[0]
    torch.manual_seed(3)
    model = make_model(ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli"), 6).to(device)
    x = torch.bernoulli(torch.full((4, 6), 0.4, device=device))
    method = make_method("rem-v1", particles=5)
    torch.cuda.manual_seed(11)
    expected = method(model, x).losses
    torch.cuda.manual_seed(11)
    got = method(model, x, generator=device_generator(x.device)).losses
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def _cuda_step(decision: str | None = None, precision: str = "32"):
    from deepem.training.step import TrainStep

    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=8, hidden=[64, 64], likelihood="bernoulli"), 784).cuda()
    return TrainStep(model, make_method("iwae", particles=10), precision=precision, decision=decision)


@cuda
def test_on_cuda_the_step_decides_on_the_device_and_never_waits_for_it():
    step = _cuda_step()
    assert step.decision == "device"
    x = torch.bernoulli(torch.full((20, 784), 0.13, device="cuda"))
    step(x).settled()  # Adam's state created, kernels chosen
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronisation raises
    try:
        results = [step(x) for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(not r.settled().problem for r in results)
    bad = x.clone()
    bad[0, 0] = float("nan")
    before = {k: v.clone() for k, v in step.model.state_dict().items()}
    assert step(bad).settled().problem.startswith("input batch")
    assert all(torch.equal(before[k], v) for k, v in step.model.state_dict().items())


@cuda
@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
def test_the_cuda_graph_step_takes_the_eager_step_s_steps(precision):
    from deepem.training.cuda_graph import GraphedStep

    if precision.startswith("bf16") and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    eager, graphed_step = _cuda_step(precision=precision), _cuda_step(precision=precision)
    graphed = GraphedStep(graphed_step, warmup=2)
    data = torch.bernoulli(torch.full((70, 784), 0.13, device="cuda"), generator=torch.Generator("cuda").manual_seed(1))
    kinds = []
    for i in range(0, 70, 20):  # 20, 20, 20, 10: warm-up, warm-up, capture, eager
        torch.cuda.manual_seed(i)
        expected = eager(data[i:i + 20]).settled()
        torch.cuda.manual_seed(i)
        got = graphed(data[i:i + 20]).settled()
        kinds.append(graphed.last)
        assert not got.problem and not expected.problem
        torch.testing.assert_close(got.output.losses["theta"], expected.output.losses["theta"])
    assert kinds == ["warm-up", "warm-up", "capture", "eager"]
    for k, v in eager.model.state_dict().items():
        torch.testing.assert_close(graphed_step.model.state_dict()[k], v)


@cuda
def test_a_model_moved_to_cuda_takes_torch_s_tanh_there():
    from deepem.models.networks import Tanh

    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16).cuda()
    tanhs = [m for m in model.modules() if isinstance(m, Tanh)]
    assert tanhs and all(m.kernel is torch.tanh for m in tanhs)


@cuda
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_s_step_on_cuda_never_waits_for_the_gpu(method):
    """(On CPU every host read is refused instead: tests/training/test_device_decision.py.)"""
    from deepem.training.step import TrainStep

    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=8, hidden=[64], likelihood="bernoulli"), 784).cuda()
    bound = make_method(method, particles=5)
    bound.bind(model)
    bound.cuda()  # (a method's own networks, built by bind, and its buffers)
    step = TrainStep(model, bound, lr=1e-3)
    assert step.decision == "device"
    x = torch.bernoulli(torch.full((20, 784), 0.13, device="cuda"))
    mask = None
    if method in ("miwae", "miss-iwem", "miss-iwem-woa"):
        mask = torch.rand(x.shape, device="cuda") < 0.7
        x = x.masked_fill(~mask, float("nan"))
    assert not step(x, mask).settled().problem  # Adam's state created, kernels chosen
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        result = step(x, mask)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not result.settled().problem


@cuda
def test_a_cuda_graph_run_trains_as_the_eager_run(tmp_path):
    from deepem.training.config import TrainConfig
    from deepem.workflows.assembly import build_trainer

    finals = {}
    for graph in (False, True):
        config = TrainConfig(dataset="digits", method="iwae", model=ModelConfig(latent_dim=4, hidden=[16]), epochs=2,
                             batch_size=20, train_limit=100, valid_every=0, seed=5, device="cuda", cuda_graph=graph,
                             method_options={"particles": 3})
        trainer = build_trainer(config, tmp_path / str(graph), log=lambda line: None, progress=False)
        assert (trainer.graphed is not None) == graph
        trainer.start()
        trainer.fit()
        finals[graph] = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    for k, v in finals[False].items():
        torch.testing.assert_close(finals[True][k], v)
