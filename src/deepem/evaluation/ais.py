"""log p(x) by annealed importance sampling (Neal 2001), the evaluation of Wu et al. (2016) that AIWAE
reports (Sec. 5.2: 16 chains, 10,000 temperatures, HMC with 10 leapfrog steps tuned to acceptance 0.6).

Chains start at the prior p(z) (Wu et al.) or at the encoder q(z|x), anneal along
q0^(1-β) p(x, z)^β with a sigmoid (or linear) schedule, and take one HMC transition per temperature.
Step sizes are kept per data point and adapted after every transition toward the target acceptance.
The estimate logmeanexp over chains is a stochastic lower bound on log p(x); its bias shrinks as the
number of temperatures grows (check it with `deepem.evaluation.bdmc`).

Cost grows as points x chains x temperatures x leapfrog steps (one decoder forward and backward per
leapfrog step): the defaults (T=500, 16 chains, L=10) are a CPU budget; the paper's setting is
`temperatures=10000`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from deepem.errors import InvalidInputError
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.evaluation.sharding import Shard, batch_plan, gathered
from deepem.inference.adaptation import TARGET_ACCEPTANCE
from deepem.inference.ais import SCHEDULES, AISResult, ais, make_schedule
from deepem.inference.distributions import LatentDistribution
from deepem.models.lvm import DeepLatentModel

INITIALS = ("prior", "encoder")
DEFAULT_TEMPERATURES = 500
DEFAULT_CHAINS = 16
DEFAULT_LEAPFROG_STEPS = 10
DEFAULT_STEP_SIZE = 0.05
#: multiplicative step-size change per transition; 5% lets a 100-temperature run still adapt.
ADAPTATION_RATE = 0.05


def check_ais_model(model: DeepLatentModel, initial: str) -> None:
    """AIS moves z with HMC (continuous latents only) and needs log q0 (no implicit q as the start)."""
    if model.latent_support != "real":
        raise InvalidInputError(f"AIS with HMC needs continuous latents; this model's are {model.latent_support}. "
                                "Use the importance-weighted estimator (--estimator iw) instead")
    if initial == "encoder" and not getattr(model.encoder, "has_log_prob", True):
        raise InvalidInputError("AIS from the encoder needs log q(z|x), and this model's encoder is implicit (no "
                                "density); start the chains at the prior instead (--ais-initial prior)")


def initial_distribution(model: DeepLatentModel, x: Tensor, initial: str) -> LatentDistribution:
    """q0 for a batch x: the prior p(z) ("prior", Wu et al. 2016) or the encoder q(z|x) ("encoder")."""
    if initial == "prior":
        return model.prior.per_point(x.shape[0], x.dtype, x.device)
    if initial == "encoder":
        with torch.no_grad():
            return model.encode(x).detach()
    raise ValueError(f"unknown AIS initial distribution {initial!r}; choose one of {', '.join(INITIALS)}")


def check_ais_settings(chains: int, temperatures: int, leapfrog_steps: int, schedule: str, initial: str,
                       step_size: float, batch_size: int) -> None:
    """Raise a ValueError naming the first bad setting."""
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    if temperatures < 2:
        raise ValueError(f"temperatures must be >= 2 (β=0 and β=1), got {temperatures}")
    if leapfrog_steps < 1:
        raise ValueError(f"leapfrog_steps must be >= 1, got {leapfrog_steps}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown AIS schedule {schedule!r}; choose one of {', '.join(sorted(SCHEDULES))}")
    if initial not in INITIALS:
        raise ValueError(f"unknown AIS initial distribution {initial!r}; choose one of {', '.join(INITIALS)}")
    if step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def ais_batch(model: DeepLatentModel, x: Tensor, chains: int = DEFAULT_CHAINS,
              temperatures: int = DEFAULT_TEMPERATURES, leapfrog_steps: int = DEFAULT_LEAPFROG_STEPS,
              schedule: str = "sigmoid", initial: str = "prior", step_size: float = DEFAULT_STEP_SIZE,
              target_acceptance: float = TARGET_ACCEPTANCE,
              generator: torch.Generator | None = None,
              on_transition: Callable[[int, int], None] | None = None, replay: bool = False) -> AISResult:
    """Forward AIS for one batch x (B, D): per-(chain, point) log-weights, final samples, diagnostics.
    replay=True: the same random draws with a flat target instead of the model (no decoder), to advance
    `generator` past a batch another rank computes (sharding.py); the result is meaningless."""
    betas = make_schedule(schedule, temperatures)
    q0 = initial_distribution(model, x, initial)
    target = flat_target if replay else (lambda z: model.log_joint(x, z))
    # The transition at β = 1 would change no weight: skip it (final_transition=False).
    return ais(target, q0, betas, chains, step_size, leapfrog_steps, generator,
               adapt=True, target_acceptance=target_acceptance, adaptation_rate=ADAPTATION_RATE,
               final_transition=False, on_transition=on_transition)


def flat_target(z: Tensor) -> Tensor:
    """log p = 0 for every z (differentiable in z): HMC on it draws what it would on any target."""
    return (z * 0).sum(-1)


def ais_log_likelihood(model: DeepLatentModel, data: Tensor, chains: int = DEFAULT_CHAINS,
                       temperatures: int = DEFAULT_TEMPERATURES,
                       leapfrog_steps: int = DEFAULT_LEAPFROG_STEPS, schedule: str = "sigmoid",
                       initial: str = "prior", step_size: float = DEFAULT_STEP_SIZE,
                       target_acceptance: float = TARGET_ACCEPTANCE, batch_size: int = 100, seed: int = 0,
                       progress: Callable[[int], None] | None = None,
                       shard: Shard | None = None) -> LogLikelihoodEstimate:
    """The AIS estimate of log p(x) for every row of `data`, seeded so that it is reproducible.
    shard: this rank's part of a sharded evaluation (sharding.py); the result is the same.

    `progress`, if given, is called after every batch with the number of points that batch finished
    (tqdm's `update`). Mean acceptance and mean ESS over chains are recorded in the settings."""
    check_ais_settings(chains, temperatures, leapfrog_steps, schedule, initial, step_size, batch_size)
    check_ais_model(model, initial)
    model.eval()
    p = next(model.parameters())
    data = data.to(p.device, p.dtype)
    model.check_data(data)
    generator = torch.Generator(device=p.device).manual_seed(seed)
    parts, acceptance, ess = [], [], []
    for start, compute in batch_plan(data.shape[0], batch_size, shard):
        x = data[start:start + batch_size]
        if not compute:  # another rank's batch: advance the generator past its draws
            ais_batch(model, x, chains, temperatures, leapfrog_steps, schedule, initial, step_size,
                      target_acceptance, generator, replay=True)
            continue
        # Progress in fractions of the batch's points after every transition, so that a long AIS run
        # moves its bar every few seconds instead of once per batch.
        tick = None if progress is None else _fractional_progress(progress, x.shape[0])
        result = ais_batch(model, x, chains, temperatures, leapfrog_steps, schedule, initial, step_size,
                           target_acceptance, generator, tick)
        parts.append(result.log_marginal)
        acceptance.append(result.acceptance.mean(0) if result.acceptance.numel() else x.new_full(
            (x.shape[0],), float("nan")))
        ess.append(result.ess)
    settings = {
        "chains": chains, "temperatures": temperatures, "leapfrog_steps": leapfrog_steps,
        "schedule": schedule, "initial": initial, "step_size": step_size,
        "target_acceptance": target_acceptance, "batch_size": batch_size, "seed": seed,
    }
    per_point = gathered(parts, shard, data)
    if shard is None:  # (the float32 means of one process, unchanged)
        settings.update(mean_acceptance=float(torch.cat(acceptance).mean()), mean_ess=float(torch.cat(ess).mean()))
    else:
        settings.update(mean_acceptance=float(shard.gather(torch.cat(acceptance).cpu()).mean()),
                        mean_ess=float(shard.gather(torch.cat(ess).cpu()).mean()))
    return LogLikelihoodEstimate(per_point, ais_estimator_name(
        temperatures, chains, leapfrog_steps, initial), settings)


def _fractional_progress(progress: Callable[[float], None], points: int) -> Callable[[int, int], None]:
    """A transition callback that reports `points` in equal parts over a batch's transitions."""

    def tick(done: int, total: int) -> None:
        progress(points / total)

    return tick


def ais_estimator_name(temperatures: int, chains: int, leapfrog_steps: int, initial: str) -> str:
    """The label a reported number carries, e.g. "AIS, T=1000, chains=16, L=10, from prior"."""
    return f"AIS, T={temperatures}, chains={chains}, L={leapfrog_steps}, from {initial}"
