"""DReG and STL encoder gradients (Tucker et al. 2018; Roeder et al. 2017) against IWAE's."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from em_testing import (
    LATENT_DIM,
    PHI,
    THETA,
    make_problem,
    method_grad,
    single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from deepem.methods.registry import make_method
from deepem.models.linear_gaussian import set_encoder_to_posterior

pytestmark = pytest.mark.usefixtures("single_thread")

N_SEEDS = 150


@cache
def _grads(name: str, k: int, seed_problem: int = 1) -> torch.Tensor:
    model, x = make_problem(seed_problem)
    method = make_method(name, particles=k)
    return torch.stack([method_grad(method, model, x, PHI, s) for s in range(N_SEEDS)])


def test_dreg_is_unbiased_for_iwae_phi_gradient_with_lower_variance() -> None:
    iwae, dreg = _grads("iwae", 50), _grads("iwae-dreg", 50)
    diff = dreg - iwae  # same seeds, same particles: a paired comparison
    z = diff.mean(0) / (diff.std(0) / N_SEEDS**0.5)
    assert z.abs().max() < 4.5, z  # measured max |z| ~ 1.7 over 12 components
    ratio = dreg.var(0).sum() / iwae.var(0).sum()
    assert ratio < 0.1, ratio  # measured ~1e-4 with q near the posterior


def test_stl_is_biased_for_iwae_at_k_above_one() -> None:
    """STL drops the score term but keeps w̃ (not w̃^2): for K > 1 its mean differs from IWAE's
    (Tucker et al. 2018, section 4). This also shows the test above can detect a wrong power."""
    iwae, stl = _grads("iwae", 50), _grads("iwae-stl", 50)
    diff = stl - iwae
    z = diff.mean(0) / (diff.std(0) / N_SEEDS**0.5)
    assert z.abs().max() > 10, z


def _exact_posterior_problem():
    """A model whose posterior is diagonal (W has orthogonal columns), so q can equal it exactly."""
    model, x = make_problem(2)
    g = torch.Generator().manual_seed(5)
    w = model.decoder.weight
    q, _ = torch.linalg.qr(torch.randn(w.shape, generator=g, dtype=w.dtype))
    with torch.no_grad():
        w.copy_(q * torch.tensor([1.5, 0.7], dtype=w.dtype)[:LATENT_DIM])
    set_encoder_to_posterior(model, std_scale=1.0)
    return model, x


def test_dreg_and_stl_stick_the_landing_at_the_exact_posterior() -> None:
    """With q = p(z | x), log w_k = log p(x) for every z: the path-derivative estimators are exactly
    zero, while IWAE's gradient keeps a non-zero score-function term."""
    model, x = _exact_posterior_problem()
    for name in ("iwae-dreg", "iwae-stl"):
        g = method_grad(make_method(name, particles=10), model, x, PHI, seed=0)
        assert g.abs().max() < 1e-10, (name, g)
    g_iwae = method_grad(make_method("iwae", particles=10), model, x, PHI, seed=0)
    assert g_iwae.abs().max() > 1e-3


def test_theta_gradient_is_iwae_exactly() -> None:
    model, x = make_problem(3)
    ref = method_grad(make_method("iwae", particles=7), model, x, THETA, seed=11)
    for name in ("iwae-dreg", "iwae-stl"):
        g = method_grad(make_method(name, particles=7), model, x, THETA, seed=11)
        assert torch.allclose(g, ref, rtol=1e-12, atol=1e-12), (name, g, ref)
