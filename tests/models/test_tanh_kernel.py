"""The networks' tanh chooses its kernel once, for its device (when built and when moved), never at a call:
the fast CPU form (inference/fast_tanh.py) on CPU, torch.tanh on every other device, CUDA included."""

from __future__ import annotations

import torch

from deepem.inference.fast_tanh import cpu_tanh, tanh_kernel
from deepem.models import networks
from deepem.models.networks import Tanh, mlp


def test_the_kernel_is_chosen_for_the_device_cuda_never_taking_the_cpu_form():
    assert tanh_kernel(torch.device("cpu")) is cpu_tanh
    for device in ("cuda", "cuda:1", "meta", "mps"):
        assert tanh_kernel(torch.device(device)) is torch.tanh


def test_a_network_s_tanh_chooses_when_built_and_moved():
    net = mlp(5, [16, 16], 3)
    tanhs = [m for m in net if isinstance(m, Tanh)]
    assert len(tanhs) == 2 and all(t.kernel is cpu_tanh for t in tanhs)
    net.to("meta")
    assert all(t.kernel is torch.tanh for t in tanhs)
    net.to(torch.float64)  # a change of type alone keeps the device's choice
    assert all(t.kernel is torch.tanh for t in tanhs)
    net.to_empty(device="cpu")
    assert all(t.kernel is cpu_tanh for t in tanhs)
    with torch.device("meta"):  # built on another default device
        assert Tanh().kernel is torch.tanh


def test_no_call_chooses_the_kernel_again(monkeypatch):
    chosen: list[torch.device] = []

    def counted(device: torch.device):
        chosen.append(device)
        return tanh_kernel(device)
    monkeypatch.setattr(networks, "tanh_kernel", counted)
    tanh = Tanh()
    x = torch.randn(400, 200, generator=torch.Generator().manual_seed(0), requires_grad=True)  # the fast form
    assert x.numel() >= 65536 and chosen == [torch.device("cpu")]
    for _ in range(3):
        y = tanh(x)
        y.sum().backward()
    assert chosen == [torch.device("cpu")]  # chosen when built, not at the calls
    assert torch.allclose(y, torch.tanh(x), rtol=0, atol=1e-6)
    tanh.to("meta")
    assert chosen == [torch.device("cpu"), torch.device("meta")] and tanh.kernel is torch.tanh
