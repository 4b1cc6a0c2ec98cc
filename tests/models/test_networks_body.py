"""The MLP body runs particles as one matrix: the same bits, values and gradients, as layer by layer on
the (K, B, H) tensor."""

from __future__ import annotations

import torch
from torch import nn

from deepem.models.networks import mlp


def test_flattened_body_is_bitwise_the_layerwise_one():
    torch.manual_seed(0)
    net = mlp(50, [200, 200], 784)
    z = torch.randn(50, 20, 50, requires_grad=True)
    layers = nn.Sequential(*list(net)[:-1])
    ref = layers(z)
    out = net.body(z)
    assert out.shape == (50, 20, 200) and torch.equal(out, ref)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [z, *layers.parameters()], g)
    grads = torch.autograd.grad(out, [z, *layers.parameters()], g)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads, strict=True))
    # a non-contiguous or 2-D input takes the layer-by-layer path
    assert torch.equal(net.body(z.detach().transpose(0, 1)), layers(z.detach().transpose(0, 1)))
    assert torch.equal(net.body(z.detach()[0]), layers(z.detach()[0]))
