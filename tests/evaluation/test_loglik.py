"""The IW estimate of log p(x): exactness where it must be, convergence in K, bounded memory."""

import torch

from deepem.evaluation.loglik import iw_log_likelihood, iw_log_likelihood_batch
from deepem.models.linear_gaussian import exact_log_marginal, set_encoder_to_posterior


def test_iw_estimate_converges_to_exact_log_marginal(lg_model):
    model, x = lg_model
    set_encoder_to_posterior(model, std_scale=2.0)  # a proposal wider than p(z|x): finite weight variance
    exact = exact_log_marginal(model, x).detach()
    errors = {}
    for k in (1, 10, 100, 10_000):
        est = iw_log_likelihood(model, x, particles=k, seed=0).per_point
        errors[k] = float((exact - est).abs().mean())
    # The bias of the IWAE-K bound shrinks like 1/K; at K = 10^4 it is within a few hundredths.
    assert errors[10_000] < 0.05
    assert errors[10_000] < errors[100] < errors[1]
    assert errors[1] > 0.3  # the encoder is far from the posterior: K = 1 is visibly loose


def test_iw_estimate_is_a_lower_bound_that_tightens_with_k(lg_model):
    model, x = lg_model
    set_encoder_to_posterior(model, std_scale=2.0)
    exact = exact_log_marginal(model, x).detach()

    def mean_estimate(k: int) -> torch.Tensor:
        return torch.stack([iw_log_likelihood(model, x, particles=k, seed=s).per_point
                            for s in range(200)]).mean(0)

    l1, l5 = mean_estimate(1), mean_estimate(5)
    assert (l1 < l5).all() and (l5 < exact).all()


def test_chunked_estimate_does_not_depend_on_chunk_size(lg_model):
    model, x = lg_model
    set_encoder_to_posterior(model, std_scale=1.5)
    a = iw_log_likelihood_batch(model, x, 4000, chunk_particles=4000, generator=torch.Generator().manual_seed(0))
    b = iw_log_likelihood_batch(model, x, 4000, chunk_particles=37, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=0.03)  # same quantity; only the Monte Carlo noise differs


def test_estimate_is_seeded_and_keeps_per_point_values(lg_model):
    model, x = lg_model
    a = iw_log_likelihood(model, x, particles=50, seed=7, batch_size=3)
    b = iw_log_likelihood(model, x, particles=50, seed=7, batch_size=3)
    assert torch.equal(a.per_point, b.per_point)
    assert a.per_point.shape == (4,)
    assert a.estimator == "IWAE bound, K=50"
    summary = a.summary()
    assert summary["n_points"] == 4 and summary["log_likelihood"] < 0 and summary["stderr"] > 0
