"""The bookkeeping behind profile_step.py's isolated-products floor and subnormals.py's counts."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from peers import D, H, evaluation_flops, training_flops  # noqa: E402
from profile_step import product_shapes  # noqa: E402
from subnormals import DenormalCounter, weight_tails  # noqa: E402


def flops(shapes: list[tuple[int, int, int]]) -> int:
    return sum(2 * m * n * c for m, n, c in shapes)


def test_isolated_products_are_the_steps_products():
    # training: forward, grad-input and grad-weight of every layer, less the encoder input's gradient
    assert flops(product_shapes(50, 20, True)) == training_flops(50, 20) - 2 * 20 * D * H
    assert len(product_shapes(50, 20, True)) == 17
    assert flops(product_shapes(5000, 4, False)) == evaluation_flops(5000, 4)


def test_counter_counts_denormal_outputs_of_each_op_but_not_views():
    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([1.0, tiny, 0.0, -tiny])
    with DenormalCounter() as counter:
        y = x * 0.25  # two denormals
        y.view(2, 2)
    assert counter.ops["aten.mul.Tensor"]["denormal"] == 2
    assert counter.ops["aten.mul.Tensor"]["values"] == 4
    assert not any("view" in name for name in counter.ops)


def test_counter_finds_matrix_operands_whose_products_are_denormal():
    a = torch.tensor([[1e-36, 1.0], [0.0, 2.0]])
    b = torch.full((2, 3), 1e-3)  # rms 1e-3: 1e-36 * 1e-3 is denormal, 1 * 1e-3 is not
    with DenormalCounter() as counter:
        torch.mm(a, b)
    assert counter.ops["aten.mm.default"]["denormal-product operands"] == 1


def test_weight_tails():
    log_w = torch.tensor([[0.0], [-80.0], [-200.0], [-10.0]])  # softmax: ~1, ~1.8e-35, 0, ~4.5e-5
    tails = weight_tails(log_w)
    assert tails["weights < 1e-30"] == 0.5 and tails["weights == 0"] == 0.25
