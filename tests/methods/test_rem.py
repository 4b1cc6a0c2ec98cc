"""REM v1 / v2 (Dieng & Paisley, Alg. 1-2): wiring and cost. Consistency of both gradients is tested
in test_em_gradients.py; the moment matching itself in tests/inference/test_moments.py."""

from __future__ import annotations

import pytest
import torch
from em_testing import (
    PHI,
    THETA,
    make_problem,
    method_grad,
    single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from deepem.methods.registry import make_method

pytestmark = pytest.mark.usefixtures("single_thread")


def test_v1_theta_gradient_equals_iwae_on_the_same_particles() -> None:
    """REM v1's M-step is IWAE's θ-gradient (eq. 10): same particles, same gradient."""
    model, x = make_problem(1)
    ref = method_grad(make_method("iwae", particles=6), model, x, THETA, seed=3)
    g = method_grad(make_method("rem-v1", particles=6), model, x, THETA, seed=3)
    assert torch.allclose(g, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "options"),
    [("rem-v1", {}), ("rem-v2", {"phi_proposal": "q"}), ("rem-v2", {"phi_proposal": "s"})],
)
def test_one_decoder_pass_with_a_graph_and_one_without(name: str, options: dict) -> None:
    """The efficiency target: one decoder forward+backward and one graph-free forward on K particles."""
    model, x = make_problem(1)
    calls: list[bool] = []
    handle = model.decoder.register_forward_hook(lambda mod, inp, out: calls.append(out.requires_grad))
    try:
        out = make_method(name, particles=8, **options)(model, x)
    finally:
        handle.remove()
    assert sorted(calls) == [False, True], calls
    # each loss reaches only its own group: the φ loss has no path into the decoder, and vice versa
    theta_params, phi_params = model.generative_parameters(), model.encoder_parameters()
    assert all(g is None for g in torch.autograd.grad(out.losses[PHI], theta_params, retain_graph=True,
                                                      allow_unused=True))
    assert all(g is None for g in torch.autograd.grad(out.losses[THETA], phi_params, allow_unused=True))


def test_s_diagnostics_are_reported() -> None:
    model, x = make_problem(1)
    torch.manual_seed(0)
    diag = make_method("rem-v1", particles=500, covariance="weighted")(model, x).diagnostics
    # s is moment-matched to the posterior: a better proposal than the widened, shifted encoder
    assert diag["s_ess_fraction"] > 0.95 > 0.7 > diag["ess_fraction"]  # measured 0.99 and 0.65
    assert abs(diag["s_iw_bound"] - diag["iw_bound"]) < 0.05


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("rem-v1", {"particles": 1}, "particles = 1: must be an integer >= 2"),
        ("rem-v1", {"covariance": "full"}, "covariance"),
        ("rem-v1", {"jitter": -1.0}, "jitter"),
        ("rem-v1", {"jitter": 1e-6, "eps": 1e-6}, "former name"),
        ("rem-v2", {"phi_proposal": "r"}, "phi_proposal"),
    ],
)
def test_bad_options_are_named(name: str, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_method(name, **options)


def test_the_former_option_name_eps_still_builds_rem() -> None:
    """Run folders written before the rename saved the jitter as `eps`: resuming them must still work."""
    for name in ("rem-v1", "rem-v2"):
        assert make_method(name, eps=1e-4).jitter == 1e-4
        assert make_method(name, jitter=1e-3).jitter == 1e-3
