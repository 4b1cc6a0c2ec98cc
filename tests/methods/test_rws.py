"""Reweighted wake-sleep: θ is IWAE's snIS gradient, the wake φ-update is covered by the inclusive-KL
consistency test (test_em_gradients.py); here the sleep phase and the wake-sleep mixture."""

from __future__ import annotations

import pytest
import torch
from em_testing import (
    PHI,
    THETA,
    inclusive_kl,
    make_problem,
    method_grad,
    single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from deepem.methods.base import draw
from deepem.methods.registry import make_method
from deepem.methods.rws import dream, rws_sleep_loss, rws_wake_losses
from deepem.models.linear_gaussian import exact_posterior
from deepem.training.step import make_step

pytestmark = pytest.mark.usefixtures("single_thread")


def test_theta_gradient_equals_iwae_on_the_same_particles() -> None:
    """IWAE's θ-gradient is -sum sg(α) ∇θ log p(x, z) (REM eq. 10): RWS must reproduce it exactly."""
    model, x = make_problem(1)
    ref = method_grad(make_method("iwae", particles=6), model, x, THETA, seed=3)
    g = method_grad(make_method("rws", particles=6), model, x, THETA, seed=3)
    assert torch.allclose(g, ref, rtol=1e-12, atol=1e-12)


def test_wake_sleep_is_the_average_of_wake_and_sleep() -> None:
    model, x = make_problem(1)
    losses = {}
    for update in ("wake", "sleep", "wake-sleep"):
        torch.manual_seed(4)  # same q-particles and same model samples for all three
        losses[update] = float(make_method("rws", particles=6, phi_update=update)(model, x).losses[PHI].detach())
    assert losses["wake-sleep"] == pytest.approx(0.5 * (losses["wake"] + losses["sleep"]), rel=1e-12)
    assert losses["wake"] != pytest.approx(losses["sleep"], rel=1e-3)


def test_sleep_phase_fits_q_to_the_posterior_of_the_models_own_data() -> None:
    """With θ frozen, sleep updates minimise E_{p(x)} KL(p(z|x) || q(z|x)). A linear encoder can reach
    the best diagonal Gaussian (the exact mean map, the posterior's marginal std), whose KL is
    (log det diag S - log det S) / 2; the data KL must end close to that floor."""
    model, x = make_problem(2, n=64, mean_shift=2.0, std_scale=3.0)
    cov = exact_posterior(model, x)[1].detach()
    floor = float(0.5 * (torch.log(torch.diagonal(cov)).sum() - torch.logdet(cov)))
    before = float(inclusive_kl(model, x).detach().mean())
    torch.manual_seed(0)
    method = make_method("rws", particles=2, phi_update="sleep")
    step = make_step(model, method, {THETA: 0.0, PHI: 0.1})
    groups = step.groups
    theta_before = [p.detach().clone() for p in groups[THETA]]
    for _ in range(150):
        step(x)
    after = float(inclusive_kl(model, x).detach().mean())
    assert all(torch.equal(p, q) for p, q in zip(groups[THETA], theta_before, strict=True))
    assert before - floor > 1.0, (before, floor)
    # measured: before 2.49, after 0.051, floor 1e-4
    assert after - floor < 0.05 * (before - floor), (before, after, floor)


def test_unknown_phi_update_is_named() -> None:
    with pytest.raises(ValueError, match="phi_update"):
        make_method("rws", phi_update="dream")


@pytest.mark.parametrize("phi_update", ["wake", "sleep", "wake-sleep"])
def test_rws_losses_are_its_public_functions_on_the_same_draws(phi_update: str) -> None:
    """RWS's losses are rws_wake_losses on its draws and rws_sleep_loss on its dreamt pairs, drawn in that
    order from the generator it is given."""
    model, x = make_problem(1)
    out = make_method("rws", particles=4, phi_update=phi_update)(model, x, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    theta, wake = rws_wake_losses(draw(model, x, 4, reparameterize=False, generator=g))
    sleep = rws_sleep_loss(model, *dream(model, x.shape[0], g))
    phi = {"wake": wake, "sleep": sleep, "wake-sleep": 0.5 * (wake + sleep)}[phi_update]
    assert torch.equal(out.losses[THETA], theta) and torch.equal(out.losses[PHI], phi)


def test_rws_sleep_loss_is_minus_the_mean_log_q_of_the_given_pairs() -> None:
    model, x = make_problem(1)
    z = torch.randn(3, model.latent_dim, dtype=x.dtype, generator=torch.Generator().manual_seed(0))
    expected = -model.encode(x[:3]).log_prob(z).mean()
    assert torch.equal(rws_sleep_loss(model, z, x[:3]), expected)
