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
from typing import Any

import torch
from torch import Tensor

from deepem.evaluation.ais import check_ais_model, flat_target, forward_ais, initial_distribution
from deepem.evaluation.driver import walk
from deepem.evaluation.settings import AISSettings, EstimatorSettingError
from deepem.evaluation.sharding import Shard
from deepem.inference.ais import TemperedPath, ais, chain_starts
from deepem.inference.temperatures import make_schedule
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


def reverse_ais(model: DeepLatentModel, x: Tensor, z: Tensor, settings: AISSettings, forward_steps: Tensor,
                generator: torch.Generator | None = None, replay: bool = False) -> Tensor:
    """Reverse AIS from exact posterior samples z (B, Dz) of x, annealing from β = 1 to 0 with the
    forward run's step sizes reversed: per-point stochastic upper bounds on log p(x), (B,)."""
    s = settings
    q0 = initial_distribution(model, x, s.initial)
    path = TemperedPath(flat_target if replay else (lambda zz: model.log_joint(x, zz)), q0)
    steps = reversed_step_sizes(forward_steps, s.temperatures - 1, s.step_size)
    temperatures = make_schedule(s.schedule, s.temperatures).flip(0)
    result = ais(path, chain_starts(q0, s.chains, start=z), temperatures, steps, s.leapfrog_steps, generator,
                 final_transition=False)
    return result.log_marginal


def bdmc(model: DeepLatentModel, n_points: int = 100, batch_size: int = 100, seed: int = 0,
         progress: Callable[[float], None] | None = None, shard: Shard | None = None,
         settings: AISSettings | None = None, **values: Any) -> BDMCResult:
    """Simulate `n_points` (z, x) from the model and bound log p(x) from both sides by AIS.

    The AIS settings are an AISSettings record (or its values as keywords: chains, temperatures, ...);
    `progress` is called with the points each batch finished. shard: this rank's part of a sharded run
    (evaluation/sharding.py); the result is the same."""
    try:
        s = settings if settings is not None else AISSettings(**values)
    except TypeError as err:
        raise EstimatorSettingError(f"{err}; the AIS settings are {', '.join(AISSettings.__dataclass_fields__)}"
                                    ) from err
    if n_points < 1:
        raise EstimatorSettingError(f"invalid n_points = {n_points!r}: must be >= 1")
    if batch_size < 1:
        raise EstimatorSettingError(f"invalid batch_size = {batch_size!r}: must be >= 1")
    check_ais_model(model, s.initial)
    model.eval()
    p = next(model.parameters())
    generator = torch.Generator(device=p.device).manual_seed(seed)
    data, latents = simulate(model, n_points, generator)

    def both_bounds(x: Tensor, z: Tensor, replay: bool, report: Any) -> dict[str, Tensor]:
        # replay: another rank's batch; the same draws with a flat target
        forward = forward_ais(model, x, s, generator, replay=replay)
        upper = reverse_ais(model, x, z, s, forward.step_sizes, generator, replay)
        return {"lower": forward.log_marginal, "upper": upper}

    bounds = walk(both_bounds, [data, latents], batch_size, shard, progress, ("lower", "upper"),
                  torch.zeros(0, dtype=p.dtype, device=p.device))
    lower, upper = (bounds[c].detach().to("cpu", torch.float64) for c in ("lower", "upper"))
    return BDMCResult(lower, upper, data.cpu(), latents.cpu(), {**vars(s), "batch_size": batch_size, "seed": seed})
