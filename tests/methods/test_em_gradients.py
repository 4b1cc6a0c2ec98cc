"""Consistency of the EM-family gradient estimators on the linear-Gaussian model (float64, seeded):
as K grows, every θ loss's gradient tends to the exact -∇θ log p(x), and every inclusive-KL φ loss's
gradient to the exact ∇φ KL(p(z | x) || q(z | x)). Errors are relative, averaged over seeds."""

from __future__ import annotations

import numpy as np
import pytest
from em_testing import (  # noqa: F401  (single_thread is a fixture)
    PHI,
    THETA,
    exact_elbo_theta_grad,
    exact_kl_phi_grad,
    exact_theta_grad,
    make_problem,
    method_grad,
    relative_error,
    single_thread,
)

from deepem.methods.registry import make_method

pytestmark = pytest.mark.usefixtures("single_thread")

SEEDS = range(4)

# (method, options) whose θ-gradient estimates ∇θ log p(x); IWEM with a = 1 (see the mixed test below)
THETA_CASES = [
    ("rws", {}),
    ("rem-v1", {}),
    ("rem-v1", {"covariance": "weighted"}),
    ("rem-v2", {}),
    ("rem-v2", {"covariance": "weighted"}),
    ("iwem", {"alpha_start": 1.0}),
    ("iwem", {"alpha_start": 1.0, "proposal_std_scale": 1.5}),
    ("iwem-woo", {"alpha_start": 1.0, "proposal_std_scale": 1.5}),
    ("iwem-woa", {}),
    ("iwae-dreg", {}),
    ("iwae-stl", {}),
]

# (method, options) whose φ loss is the snIS inclusive KL
KL_PHI_CASES = [
    ("rws", {"phi_update": "wake"}),
    ("rem-v1", {}),
    ("rem-v1", {"covariance": "weighted"}),
    ("rem-v2", {"phi_proposal": "q"}),
    ("rem-v2", {"phi_proposal": "s"}),
]


def _mean_error(name: str, options: dict, k: int, group: str, exact) -> float:
    model, x = make_problem(0)
    method = make_method(name, particles=k, **options)
    return float(np.mean([relative_error(method_grad(method, model, x, group, s), exact) for s in SEEDS]))


@pytest.mark.parametrize(("name", "options"), THETA_CASES, ids=lambda v: str(v))
def test_theta_gradient_converges_to_exact_log_marginal_gradient(name: str, options: dict) -> None:
    model, x = make_problem(0)
    exact = exact_theta_grad(model, x)
    small = _mean_error(name, options, 2, THETA, exact)
    large = _mean_error(name, options, 1000, THETA, exact)
    # measured: ~0.7 (K = 2) and ~0.02 (K = 1000); the snIS error falls like 1/sqrt(K)
    assert large < 0.15 * small, (small, large)
    assert large < 0.05, large


@pytest.mark.parametrize(("name", "options"), KL_PHI_CASES, ids=lambda v: str(v))
def test_phi_gradient_converges_to_inclusive_kl_gradient(name: str, options: dict) -> None:
    model, x = make_problem(0)
    exact = exact_kl_phi_grad(model, x)
    small = _mean_error(name, options, 2, PHI, exact)
    large = _mean_error(name, options, 1000, PHI, exact)
    # measured: ~2.1-2.4 (K = 2) and ~0.06-0.08 (K = 1000)
    assert large < 0.15 * small, (small, large)
    assert large < 0.15, large


@pytest.mark.parametrize("a", [0.0, 0.4])
def test_iwem_theta_gradient_is_the_annealed_mixture(a: float) -> None:
    """IWEM's E-step (eq. 8) at controller a: a * ∇θ log p(x) + (1 - a) * ∇θ ELBO, as K grows."""
    model, x = make_problem(0)
    exact = a * exact_theta_grad(model, x) + (1 - a) * exact_elbo_theta_grad(model, x)
    err = _mean_error("iwem", {"alpha_start": a, "alpha_step": 0.0}, 2000, THETA, exact)
    assert err < 0.05, err
    # and it is not the pure EM gradient: the ELBO part is really there
    wrong = _mean_error("iwem", {"alpha_start": a, "alpha_step": 0.0}, 2000, THETA, exact_theta_grad(model, x))
    assert wrong > 4 * err, (err, wrong)
