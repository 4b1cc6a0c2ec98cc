"""The record that the model-layer redesign (issue 8) is checked against: for a fixed seed, every
method's losses and the gradient of each loss with respect to its own parameter group, on a small
Bernoulli model in float64. The model's parameters are stored too, so the record does not depend on
how a model is initialised.

    python tests/methods/golden/record.py   # rewrites method_outputs.pt: only on purpose

The file was written by the code before the redesign (commit 2182bf8); `test_golden.py` recomputes the
same quantities with the current code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

RECORD = Path(__file__).with_name("method_outputs.pt")
DATA_DIM, LATENT_DIM, HIDDEN, BATCH = 6, 3, [8], 4

#: (label, method name, options): every registered method, plus the option values that change its path
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("vae", "vae", {"particles": 2}),
    ("iwae", "iwae", {"particles": 4}),
    ("iwae-dreg", "iwae-dreg", {"particles": 4}),
    ("iwae-stl", "iwae-stl", {"particles": 4}),
    ("rws-wake", "rws", {"particles": 4}),
    ("rws-sleep", "rws", {"particles": 4, "phi_update": "sleep"}),
    ("rws-wake-sleep", "rws", {"particles": 4, "phi_update": "wake-sleep"}),
    ("rem-v1", "rem-v1", {"particles": 5}),
    ("rem-v1-weighted", "rem-v1", {"particles": 5, "covariance": "weighted"}),
    ("rem-v2", "rem-v2", {"particles": 5}),
    ("rem-v2-s", "rem-v2", {"particles": 5, "phi_proposal": "s"}),
    ("iwem", "iwem", {"particles": 5, "alpha_start": 0.3}),
    ("iwem-j3-scaled", "iwem", {"particles": 5, "p_samples": 3, "proposal_std_scale": 1.3,
                                "alpha_start": 0.5}),
    ("iwem-woo", "iwem-woo", {"particles": 5, "alpha_start": 0.2}),
    ("iwem-woo-scaled", "iwem-woo", {"particles": 5, "p_samples": 7, "proposal_std_scale": 1.3}),
    ("iwem-woa", "iwem-woa", {"particles": 5}),
    ("aiwae", "aiwae", {"particles": 3, "temperatures": 4, "leapfrog_steps": 2}),
]


def make_model_and_data():
    from deepem.models import ModelConfig, make_model

    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=LATENT_DIM, hidden=HIDDEN,
                                                    likelihood="bernoulli"), DATA_DIM).double()
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((BATCH, DATA_DIM), 0.4, dtype=torch.float64), generator=g)
    return model, x


def compute(model, x, name: str, options: dict[str, Any], seed: int = 3, own_generator: bool = False
            ) -> dict[str, Any]:
    """Losses and per-group gradients of one method call under torch.manual_seed(seed); with
    own_generator, every draw from a fresh generator seeded `seed` passed as `generator=` instead."""
    from deepem.methods import make_method

    method = make_method(name, **options).double()
    groups = {"theta": model.generative_parameters(), "phi": model.encoder_parameters()}
    if own_generator:
        out = method(model, x, generator=torch.Generator().manual_seed(seed))
    else:
        torch.manual_seed(seed)
        out = method(model, x)
    result: dict[str, Any] = {"losses": {}, "grads": {}}
    losses = list(out.losses.items())
    for i, (group, loss) in enumerate(losses):
        params = [p for p in groups[group] if p.requires_grad]
        grads = torch.autograd.grad(loss, params, retain_graph=i < len(losses) - 1, allow_unused=True)
        result["losses"][group] = loss.detach().clone()
        result["grads"][group] = [torch.zeros_like(p) if g is None else g.detach().clone()
                                  for g, p in zip(grads, params, strict=True)]
    return result


def evaluations(model, x) -> dict[str, Any]:
    """Per-point IW and AIS estimates (from the prior and from the encoder) of the same model."""
    from deepem.evaluation import ais_log_likelihood, iw_log_likelihood

    out = {"iw": iw_log_likelihood(model, x, particles=7, seed=2, chunk_particles=3).per_point}
    for initial in ("prior", "encoder"):
        out[f"ais-{initial}"] = ais_log_likelihood(model, x, chains=3, temperatures=5, leapfrog_steps=2,
                                                   initial=initial, seed=2).per_point
    return out


def main() -> None:
    model, x = make_model_and_data()
    record = {"state_dict": {k: v.clone() for k, v in model.state_dict().items()}, "x": x, "cases": {}}
    for label, name, options in CASES:
        record["cases"][label] = compute(model, x, name, options)
    record["evaluation"] = evaluations(model, x)
    torch.save(record, RECORD)
    print(f"wrote {RECORD} ({len(CASES)} cases)")


if __name__ == "__main__":
    main()
