"""The same code runs on CPU and CUDA: the device is a setting, never a call in library code. The CUDA
half runs where a GPU is present (skipped on CPU-only machines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from deepem.methods import make_method
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
