"""Log-space numerics stay finite and exact where naive formulas overflow."""

import math

import torch

from deepem.inference.numerics import (
    effective_sample_size,
    log_mean_exp,
    normalized_weights,
    running_logsumexp,
)


def test_log_mean_exp_with_huge_log_weights():
    for big in (1e4, -1e4):
        log_w = torch.tensor([[big], [big + math.log(3.0)]], dtype=torch.float64)
        # mean of exp(big) and 3 exp(big) = 2 exp(big)
        assert torch.allclose(log_mean_exp(log_w), torch.tensor([big + math.log(2.0)], dtype=torch.float64))
        w = normalized_weights(log_w)
        assert torch.allclose(w[:, 0], torch.tensor([0.25, 0.75], dtype=torch.float64))
    log_w32 = torch.tensor([[1e4], [-1e4]], dtype=torch.float32)
    assert torch.isfinite(log_mean_exp(log_w32)).all()


def test_running_logsumexp_equals_one_shot():
    log_w = torch.randn(1000, 3, dtype=torch.float64) * 50
    total = None
    for chunk in log_w.split(77):
        total = running_logsumexp(total, chunk)
    assert torch.allclose(total, torch.logsumexp(log_w, 0))


def test_ess_bounds():
    k = 8
    assert torch.allclose(effective_sample_size(torch.zeros(k, 1)), torch.tensor([float(k)]))
    one_hot = torch.full((k, 1), -1e4)
    one_hot[3] = 0.0
    assert torch.allclose(effective_sample_size(one_hot), torch.tensor([1.0]))
