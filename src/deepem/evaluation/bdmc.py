"""Bidirectional Monte Carlo (Grosse et al. 2015; used by Wu et al. 2016 to validate AIS): on data
simulated from the model, (z, x) ~ p(z) p(x | z), z is an exact sample of p(z | x). Forward AIS from
q0 to p(x, z) gives a stochastic lower bound on log p(x); reverse AIS from that exact z, annealing β
from 1 to 0, gives a stochastic upper bound. The gap between the two bounds the error of the forward
AIS estimate with the same settings on data like these.

The reverse run uses the forward run's adapted step sizes, reversed, for each point: a fixed kernel
for every reverse transition, tuned for its temperature."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor

from deepem.evaluation.ais import (
    DEFAULT_CHAINS,
    DEFAULT_LEAPFROG_STEPS,
    DEFAULT_STEP_SIZE,
    DEFAULT_TEMPERATURES,
    ais_batch,
    check_ais_model,
    check_ais_settings,
    flat_target,
    initial_distribution,
)
from deepem.evaluation.sharding import Shard, batch_plan, gathered
from deepem.inference.adaptation import TARGET_ACCEPTANCE
from deepem.inference.ais import ais, make_schedule
from deepem.models.lvm import DeepLatentModel


@dataclass
class BDMCResult:
    """Per-point stochastic lower and upper bounds on log p(x) for simulated data (N,)."""

    lower: Tensor  # (N,) forward AIS
    upper: Tensor  # (N,) reverse AIS
    data: Tensor  # (N, D) the simulated x
    latents: Tensor  # (N, Dz) the exact posterior samples z they were drawn with
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """mean upper - mean lower: a bound on the error of forward AIS with these settings."""
        return float(self.upper.mean() - self.lower.mean())

    def summary(self) -> dict[str, Any]:
        return {
            "lower": float(self.lower.mean()),
            "upper": float(self.upper.mean()),
            "gap": self.gap,
            "n_points": int(self.lower.numel()),
            "estimator": f"BDMC, T={self.settings.get('temperatures')}, chains={self.settings.get('chains')}",
            **self.settings,
        }


@torch.no_grad()
def simulate(model: DeepLatentModel, n: int, generator: torch.Generator | None = None
             ) -> tuple[Tensor, Tensor]:
    """(x, z) ~ p(z) p(x | z): n data points with the exact posterior samples that produced them."""
    z = model.sample_prior(n, generator)
    x = model.likelihood.sample(model.decoder(z), generator)
    return x, z


def reversed_step_sizes(forward_steps: Tensor, n_transitions: int, fallback: Tensor | float
                        ) -> list[Tensor | float]:
    """Per-transition step sizes for the reverse run from those the forward run used.

    Forward transition i (0-based) ran at β_{i+1}, for i < T - 2 (the one at β = 1 is skipped). Reverse
    transition j (1-based) runs at β_{T-1-j}, which forward transition T - 2 - j used; the last reverse
    transition, at β = 0, is skipped and gets the fallback."""
    steps: list[Tensor | float] = list(forward_steps.flip(0))
    steps.append(forward_steps[0] if len(steps) else fallback)
    if len(steps) != n_transitions:
        raise ValueError(f"forward run has {forward_steps.shape[0]} step sizes; expected {n_transitions - 1}")
    return steps


def bdmc(model: DeepLatentModel, n_points: int = 100, chains: int = DEFAULT_CHAINS,
         temperatures: int = DEFAULT_TEMPERATURES, leapfrog_steps: int = DEFAULT_LEAPFROG_STEPS,
         schedule: str = "sigmoid", initial: str = "prior", step_size: float = DEFAULT_STEP_SIZE,
         target_acceptance: float = TARGET_ACCEPTANCE, batch_size: int = 100, seed: int = 0,
         progress: Callable[[int], None] | None = None, shard: Shard | None = None) -> BDMCResult:
    """Simulate `n_points` (z, x) from the model and bound log p(x) from both sides by AIS.

    Settings are those of `ais_log_likelihood`; `progress` is called with the points each batch finished.
    shard: this rank's part of a sharded run (evaluation/sharding.py); the result is the same."""
    check_ais_settings(chains, temperatures, leapfrog_steps, schedule, initial, step_size, batch_size)
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    check_ais_model(model, initial)
    model.eval()
    p = next(model.parameters())
    generator = torch.Generator(device=p.device).manual_seed(seed)
    data, latents = simulate(model, n_points, generator)
    betas = make_schedule(schedule, temperatures)
    lower, upper = [], []
    for start, compute in batch_plan(n_points, batch_size, shard):
        x, z = data[start:start + batch_size], latents[start:start + batch_size]
        # replay (compute False): another rank's batch; the same draws with a flat target
        forward = ais_batch(model, x, chains, temperatures, leapfrog_steps, schedule, initial, step_size,
                            target_acceptance, generator, replay=not compute)
        steps = reversed_step_sizes(forward.step_sizes, temperatures - 1, step_size)
        backward = ais(partial(model.log_joint, x) if compute else flat_target,
                       initial_distribution(model, x, initial), betas,
                       chains, steps, leapfrog_steps, generator, start=z, reverse=True,
                       final_transition=False)
        if not compute:
            continue
        lower.append(forward.log_marginal)
        upper.append(backward.log_marginal)
        if progress is not None:
            progress(x.shape[0])
    settings = {
        "chains": chains, "temperatures": temperatures, "leapfrog_steps": leapfrog_steps,
        "schedule": schedule, "initial": initial, "step_size": step_size,
        "target_acceptance": target_acceptance, "batch_size": batch_size, "seed": seed,
    }
    return BDMCResult(gathered(lower, shard, data), gathered(upper, shard, data), data.cpu(), latents.cpu(),
                      settings)
