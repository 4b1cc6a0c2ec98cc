"""miwae, miss-iwem and miss-iwem-woa on the linear-Gaussian model with missing coordinates (float64,
seeded): their θ-gradients tend to the exact ∇θ log p(x_o) as K grows, and without a mask they are
IWAE and IWEM (same losses bitwise, gradients to rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from em_testing import flat_grad, make_problem, relative_error, single_thread  # noqa: F401 (fixture)
from tests.missing_testing import exact_observed_log_marginal

from deepem.methods.base import THETA
from deepem.methods.registry import make_method
from deepem.models.linear_gaussian import exact_log_marginal

pytestmark = pytest.mark.usefixtures("single_thread")

SEEDS = range(4)
#: one or two of the four coordinates missing per row, and one complete row
MASK = torch.tensor([[True, False, True, True], [False, True, True, False], [True, True, True, True],
                     [True, True, False, True], [False, True, True, True]])


def _theta_grad(name: str, options: dict, k: int, seed: int, model, x) -> torch.Tensor:
    method = make_method(name, particles=k, **options)
    torch.manual_seed(seed)
    out = method(model, x.masked_fill(~MASK, float("nan")), mask=MASK)
    return flat_grad(out.losses[THETA], model.generative_parameters())


CASES = [("miwae", {}), ("miss-iwem", {"alpha_start": 1.0}), ("miss-iwem-woa", {}),
         ("miss-iwem-woa", {"proposal_std_scale": 1.5, "p_samples": 7})]


@pytest.mark.parametrize(("name", "options"), CASES, ids=lambda v: str(v))
def test_theta_gradient_converges_to_exact_observed_marginal_gradient(name: str, options: dict) -> None:
    model, x = make_problem(0)
    exact = flat_grad(-exact_observed_log_marginal(model, x, MASK).mean(), model.generative_parameters())
    errors = {k: float(np.mean([relative_error(_theta_grad(name, options, k, s, model, x), exact)
                                for s in SEEDS])) for k in (2, 1000)}
    # the observed-data gradient is far from the complete-data one: the test tells them apart
    complete = flat_grad(-exact_log_marginal(model, x).mean(), model.generative_parameters())
    assert relative_error(complete, exact) > 0.3
    # measured: ~0.7-0.96 (K = 2) and ~0.03-0.037 (K = 1000)
    assert errors[1000] < 0.15 * errors[2], errors
    assert errors[1000] < 0.05, errors


@pytest.mark.parametrize(("missing", "complete", "options"),
                         [("miwae", "iwae", {"particles": 4}),
                          ("miss-iwem", "iwem", {"particles": 4, "p_samples": 6, "alpha_start": 0.3,
                                                 "proposal_std_scale": 1.2}),
                          ("miss-iwem-woa", "iwem-woa", {"particles": 5})])
def test_without_a_mask_the_missing_data_methods_are_their_complete_data_methods(missing, complete, options):
    model, x = make_problem(1)
    outs = []
    for name in (missing, complete):
        torch.manual_seed(5)
        out = make_method(name, **options)(model, x)
        outs.append({g: (loss.detach(), flat_grad(loss, model.generative_parameters() + model.encoder_parameters()))
                     for g, loss in out.losses.items()})
    for group in outs[0]:
        assert torch.equal(outs[0][group][0], outs[1][group][0])
        # gradients agree to rounding (autograd may accumulate the same terms in another order)
        torch.testing.assert_close(outs[0][group][1], outs[1][group][1], rtol=1e-12, atol=1e-14)


def test_the_e_step_counts_the_drawn_missing_values():
    """With one particle the θ loss at a = 1 is -log p(x_o, x_m, z) of the draw (eq. 9's Q̂_m) and at
    a = 0 it is -log p(x_o, z) (the ELBO's θ part): the same draws, so they differ by log p(x_m | z)."""
    model, x = make_problem(2)
    torch.manual_seed(0)
    miss = make_method("miss-iwem-woa", particles=1)(model, x, mask=MASK)
    torch.manual_seed(0)
    # the same draws with the missing-value term removed: the ELBO-only form a = 0
    elbo = make_method("miss-iwem", particles=1, alpha_start=0.0, alpha_step=0.0)(model, x, mask=MASK)
    diff = float((miss.losses[THETA] - elbo.losses[THETA]).detach())
    assert diff != 0.0  # the log p(x_m,k | z_k) term is there at a = 1 and not at a = 0
