"""The latent distributions against torch.distributions, and their refusals."""

from __future__ import annotations

import pytest
import torch

from deepem.inference.distributions import (
    CONTINUOUS,
    DIAGONAL_Q,
    Q_DENSITY,
    RSAMPLE,
    DiagonalGaussian,
    FactorisedBernoulli,
    NotReparameterizableError,
)
from deepem.models import BernoulliEncoder, GaussianEncoder, ImplicitEncoder


def test_gaussian_log_prob_and_draws():
    mean, std = torch.randn(4, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64) + 0.5
    q = DiagonalGaussian(mean, std)
    z = q.sample(7, torch.Generator().manual_seed(0))
    ref = torch.distributions.Normal(mean, std).log_prob(z).sum(-1)
    torch.testing.assert_close(q.log_prob(z), ref, rtol=1e-12, atol=1e-12)
    # the same generator state gives the same draws, with or without a graph
    again = q.rsample(7, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, std),
                                           torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(q.kl_to_standard_normal(), kl)
    value, grad = q.log_prob_and_grad(z)
    zz = z.clone().requires_grad_()
    (auto,) = torch.autograd.grad(q.log_prob(zz).sum(), zz)
    torch.testing.assert_close(grad, auto)


def test_bernoulli_log_prob_kl_and_refusal():
    logits = torch.randn(4, 3, dtype=torch.float64)
    q = FactorisedBernoulli(logits)
    z = q.sample(5, torch.Generator().manual_seed(0))
    assert set(z.unique().tolist()) <= {0.0, 1.0} and z.shape == (5, 4, 3)
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(z).sum(-1)
    torch.testing.assert_close(q.log_prob(z), ref)
    prior = torch.randn(3, dtype=torch.float64)
    kl = torch.distributions.kl_divergence(torch.distributions.Bernoulli(logits=logits),
                                           torch.distributions.Bernoulli(logits=prior.expand(4, 3))).sum(-1)
    torch.testing.assert_close(q.kl_to(prior), kl)
    with pytest.raises(NotReparameterizableError, match="rws"):
        q.rsample(2)


def test_encoders_declare_what_their_q_can_do():
    # one diagonal Gaussian: its std can be widened (IWEM's proposal_std_scale)
    assert GaussianEncoder.capabilities() == {RSAMPLE, Q_DENSITY, CONTINUOUS, DIAGONAL_Q}
    assert BernoulliEncoder.capabilities() == {Q_DENSITY}
    assert ImplicitEncoder.capabilities() == {RSAMPLE, CONTINUOUS}
