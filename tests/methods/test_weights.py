"""The EM-family helpers: widened proposals and flushed coefficient weights."""

from __future__ import annotations

import torch
from em_testing import make_problem

from deepem.methods.base import draw
from deepem.methods.weights import coefficient_weights


def test_coefficient_weights_flush_only_negligible_weights() -> None:
    log_w = torch.tensor([[0.0, 0.0], [-1.0, -200.0], [-95.0, -1.0]], dtype=torch.float32)
    w = coefficient_weights(log_w.requires_grad_())
    assert not w.requires_grad
    ref = torch.softmax(log_w.detach(), 0)
    assert w[1, 1] == 0 and w[2, 0] == 0  # e^-200 and e^-95 (~1e-42, denormal): below eps^2, flushed
    assert ref[2, 0] > 0  # softmax alone keeps the denormal
    keep = w > 0
    assert torch.equal(w[keep], ref[keep])
    assert torch.allclose(w.sum(0), torch.ones(2), atol=1e-6)


def test_widened_proposal_uses_its_own_density() -> None:
    model, x = make_problem(0)
    torch.manual_seed(0)
    p = draw(model, x, 4, std_scale=1.5, joint_grad=False)
    mean, std = model.encoder(x)
    ref = torch.distributions.Normal(mean, 1.5 * std).log_prob(p.z).sum(-1)
    assert torch.allclose(p.log_q, ref, rtol=1e-12)
    assert torch.allclose(p.q_std, 1.5 * std)
    assert p.log_q.requires_grad and not p.log_lik.requires_grad and not p.log_prior.requires_grad
    torch.manual_seed(0)
    q = draw(model, x, 20000, std_scale=1.5, reparameterize=False)
    assert not q.z.requires_grad and q.log_lik.requires_grad
    spread = ((q.z - mean.detach()) / std.detach()).std(0)
    assert torch.allclose(spread, torch.full_like(spread, 1.5), atol=0.03)
