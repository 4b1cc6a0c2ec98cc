"""Cached constants give exactly the numbers the plain Python numbers give, with no wrapping per call."""

from __future__ import annotations

import math

import pytest
import torch

from deepem.inference.constants import constant
from deepem.inference.fast_tanh import _tanh_via_sigmoid


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constants_give_the_same_bits_as_python_numbers(dtype):
    x = torch.randn(4096, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 40
    for v in (1, 2, math.log(5), math.log(50), 1 / 3):
        c = constant(v, x)
        assert c.dtype == dtype and c.dim() == 0
        assert torch.equal(x - v, x - c) and torch.equal(x * v, x * c) and torch.equal(x / v, x / c)
    assert constant(2, x) is constant(2.0, x)  # made once


def test_half_types_keep_the_python_number_and_inference_mode_makes_a_normal_tensor():
    assert constant(3.0, torch.ones(2, dtype=torch.bfloat16)) == 3.0
    with torch.inference_mode():
        c = constant(7.25, torch.ones(2))
    w = torch.ones(3, requires_grad=True)
    (w * c).sum().backward()  # an inference tensor could not be saved for backward
    assert torch.equal(w.grad, torch.full((3,), 7.25))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tanh_via_sigmoid_is_bitwise_the_former_formula(dtype):
    x = torch.randn(50, 20, 200, dtype=dtype, generator=torch.Generator().manual_seed(1)) * 5
    assert torch.equal(_tanh_via_sigmoid(x), torch.mul(x, 2).sigmoid_().mul_(2).sub_(1))
