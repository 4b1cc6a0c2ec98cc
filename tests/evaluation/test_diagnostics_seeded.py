"""The encoder diagnostics draw from generators of the evaluation's seed, never from the global RNG: an
implicit q's means (active units) are the same number whatever was drawn before them."""

from __future__ import annotations

import torch

from deepem.evaluation import active_units, encoder_means
from deepem.evaluation.evaluate import evaluate_model
from deepem.models import ModelConfig, make_model


def implicit_model():
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli", encoder="implicit", noise_dim=4)
    return make_model(config, 10)


def test_encoder_means_of_an_implicit_q_do_not_read_the_global_rng():
    model = implicit_model()
    x = (torch.rand(30, 10, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    torch.manual_seed(123)
    first = encoder_means(model, x)
    torch.manual_seed(456)
    second = encoder_means(model, x)
    assert torch.equal(first, second)
    # the draws are the generator's: the same seed gives the same means, another seed other means
    seeded = encoder_means(model, x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(seeded, encoder_means(model, x, seed=5))
    assert not torch.equal(seeded, encoder_means(model, x, seed=6))
    torch.manual_seed(7)
    assert active_units(model, x, threshold=0.0) == active_units(model, x, threshold=0.0)


def test_an_evaluation_record_of_an_implicit_q_is_the_same_after_other_draws():
    model = implicit_model()
    x = (torch.rand(20, 10, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    records = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        record, _ = evaluate_model(model, x, "ais", seed=3, progress=False, chains=2, temperatures=5,
                                   leapfrog_steps=2, initial="prior")
        records.append({k: record[k] for k in ("log_likelihood", "active_units", "active_units_per_layer")})
    assert records[0] == records[1]
