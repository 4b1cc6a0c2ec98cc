"""IWEM (Kim et al., Alg. 2): the optimal P-step objective (eq. 7) against its closed form, the
annealing controller's schedule and its survival in checkpoints, and the ablations' wiring."""

from __future__ import annotations

import math

import pytest
import torch
from em_testing import (
    PHI,
    THETA,
    make_problem,
    single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from deepem.methods.iwem import IWEM, IWEMWoa, IWEMWoo
from deepem.methods.registry import make_method, method_options
from deepem.models.linear_gaussian import exact_log_marginal, exact_posterior
from deepem.training.step import make_step

pytestmark = pytest.mark.usefixtures("single_thread")


def _p_step_value(name: str, j: int, **options) -> float:
    model, x = make_problem(0, noise_std=1.0)
    torch.manual_seed(0)
    return -float(make_method(name, particles=5, p_samples=j, **options)(model, x).losses[PHI].detach())


def test_optimal_p_step_objective_matches_closed_form() -> None:
    """When log p(x, z) < 0 everywhere, E_q[|log p(x,z)| p(x,z) / q] = p(x) (H[p(z|x)] - log p(x)), so
    eq. 7 tends to log p(x) + log(H - log p(x)) as J grows, for any proposal (widened or not)."""
    model, x = make_problem(0, noise_std=1.0)
    log_px = exact_log_marginal(model, x).detach()
    _, cov = exact_posterior(model, x)
    assert (log_px - 0.5 * torch.logdet(2 * math.pi * cov.detach()) < -1).all()  # max_z log p(x,z) < 0
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * cov.detach())
    target = float((log_px + torch.log(entropy - log_px)).mean())
    for scale in (1.0, 1.5):
        assert abs(_p_step_value("iwem", 20000, proposal_std_scale=scale) - target) < 0.01
    assert abs(_p_step_value("iwem", 3) - target) > 5 * abs(_p_step_value("iwem", 20000) - target)


def test_woo_p_step_is_the_iwae_bound() -> None:
    """IWEM-woo's P-step maximises IWAE's bound (Alg. 1), which tends to log p(x)."""
    model, x = make_problem(0, noise_std=1.0)
    log_px = float(exact_log_marginal(model, x).detach().mean())
    for scale in (1.0, 1.5):  # woo's P-step ignores the widening: it uses the plain q
        assert abs(_p_step_value("iwem-woo", 20000, proposal_std_scale=scale) - log_px) < 0.01


def test_annealing_counts_updates_and_survives_a_checkpoint() -> None:
    method = IWEM(particles=3, alpha_start=0.1, alpha_step=0.25, alpha_every=3)
    seen = []
    for _ in range(14):
        seen.append(method.anneal_alpha)
        method.after_update()
        method.after_epoch(0)  # epochs do not count in "updates" mode
    assert seen == pytest.approx([0.1] * 3 + [0.35] * 3 + [0.6] * 3 + [0.85] * 3 + [1.0] * 2)
    assert int(method.anneal_count) == 14
    state = method.state_dict()
    assert "anneal_count" in state
    restored = IWEM(particles=3, alpha_start=0.1, alpha_step=0.25, alpha_every=3)
    assert restored.anneal_alpha == pytest.approx(0.1)
    restored.load_state_dict(state)
    assert restored.anneal_alpha == 1.0 and int(restored.anneal_count) == 14


def test_annealing_per_epoch_is_the_papers_schedule() -> None:
    method = IWEM(alpha_every=1, alpha_unit="epochs")  # +0.01 per epoch (section 5.1)
    for _ in range(500):
        method.after_update()
    assert method.anneal_alpha == 0.0
    for epoch in range(37):
        method.after_epoch(epoch)
    assert method.anneal_alpha == pytest.approx(0.37)


def test_method_step_advances_the_controller_and_reports_it() -> None:
    model, x = make_problem(0)
    method = make_method("iwem", particles=4, alpha_step=0.5, alpha_every=2)
    step = make_step(model, method, lr=1e-3)
    alphas = [step(x).output.diagnostics["anneal_alpha"] for _ in range(5)]
    assert alphas == [0.0, 0.0, 0.5, 0.5, 1.0]


def test_ablations_are_wired() -> None:
    assert IWEMWoa().anneal_alpha == 1.0
    woa = IWEMWoa()
    for _ in range(10):
        woa.after_update()
    assert woa.anneal_alpha == 1.0
    assert not IWEMWoo.optimal_p_step and IWEM.optimal_p_step
    assert "alpha_start" not in method_options("iwem-woa")
    assert method_options("iwem")["alpha_every"] == 2500


def test_p_samples_and_particles_can_differ() -> None:
    model, x = make_problem(0)
    out = make_method("iwem", particles=3, p_samples=8)(model, x)
    assert out.log_w.shape == (3, x.shape[0])
    assert torch.isfinite(out.losses[THETA]) and torch.isfinite(out.losses[PHI])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"alpha_start": 1.5}, "alpha_start"),
        ({"alpha_unit": "steps"}, "alpha_unit"),
        ({"alpha_every": 0}, "alpha_every"),
        ({"p_samples": 0}, "p_samples"),
        ({"proposal_std_scale": 0.0}, "proposal_std_scale"),
    ],
)
def test_bad_options_are_named(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_method("iwem", **options)


@pytest.mark.parametrize("start,step,every", [(0.0, 0.01, 3), (0.25, 0.07, 1), (0.0, 0.3, 2), (1.0, 0.0, 5)])
def test_the_annealing_controller_computed_on_the_device_is_python_s_number_bit_for_bit(start, step, every) -> None:
    # the step computes a as a float64 tensor (no host read); it must be the float the formula gives
    method = IWEM(particles=2, alpha_start=start, alpha_step=step, alpha_every=every)
    for count in range(0, 400, 7):
        method.anneal_count.fill_(count)
        assert method.anneal_alpha_tensor().item() == min(start + step * (count // every), 1.0)
