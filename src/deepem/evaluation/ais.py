"""log p(x) by annealed importance sampling (Neal 2001), the evaluation of Wu et al. (2016) that AIWAE
reports (Sec. 5.2: 16 chains, 10,000 temperatures, HMC with 10 leapfrog steps tuned to acceptance 0.6).

Chains start at the prior p(z) (Wu et al.) or at the encoder q(z|x), anneal along
q0^(1-β) p(x, z)^β with a sigmoid (or linear) schedule, and take one HMC transition per temperature.
Step sizes are kept per data point and adapted after every transition toward the target acceptance
(`deepem.inference.adaptation.adaptive_ais`). The estimate logmeanexp over chains is a stochastic
lower bound on log p(x); its bias shrinks as the number of temperatures grows (check it with
`deepem.evaluation.bdmc`).

Cost grows as points x chains x temperatures x leapfrog steps (one decoder forward and backward per
leapfrog step): the defaults (AISSettings: T=500, 16 chains, L=10) are a CPU budget; the paper's
setting is `temperatures=10000`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from deepem.evaluation.driver import Estimator, Progress, estimate
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.evaluation.settings import AISSettings, EstimatorSettingError
from deepem.evaluation.sharding import Shard
from deepem.inference.adaptation import adaptive_ais
from deepem.inference.ais import AISResult, TemperedPath, chain_starts
from deepem.inference.distributions import CONTINUOUS, Q_DENSITY, LatentDistribution
from deepem.inference.temperatures import make_schedule
from deepem.models.lvm import DeepLatentModel


def check_ais_model(model: DeepLatentModel, initial: str) -> None:
    """AIS moves z with HMC (continuous latents only) and needs log q0 (no implicit q as the start)."""
    capabilities = model.capabilities()
    if CONTINUOUS not in capabilities:
        raise EstimatorSettingError(
            f"AIS with HMC needs continuous latents; this model's are {model.latent_support}. "
            "Use the importance-weighted estimator (--estimator iw) instead")
    if initial == "encoder" and Q_DENSITY not in capabilities:
        raise EstimatorSettingError(
            "AIS from the encoder needs log q(z|x), and this model's encoder is implicit (no density); start "
            "the chains at the prior instead (--ais-initial prior)")


def initial_distribution(model: DeepLatentModel, x: Tensor, initial: str) -> LatentDistribution:
    """q0 for a batch x: the prior p(z) ("prior", Wu et al. 2016) or the encoder q(z|x) ("encoder")."""
    if initial == "prior":
        return model.prior.per_point(x.shape[0], x.dtype, x.device)
    with torch.no_grad():
        return model.encode(x).detach()


def flat_target(z: Tensor) -> Tensor:
    """log p = 0 for every z (differentiable in z): HMC on it draws what it would on any target."""
    return (z * 0).sum(-1)


def forward_ais(model: DeepLatentModel, x: Tensor, settings: AISSettings,
                generator: torch.Generator | None = None,
                on_transition: Callable[[int, int], None] | None = None, replay: bool = False) -> AISResult:
    """Forward AIS for one batch x (B, D): per-(chain, point) log-weights, final samples, diagnostics.
    replay=True: the same random draws with a flat target instead of the model (no decoder), to advance
    `generator` past a batch another rank computes (sharding.py); the result is meaningless."""
    s = settings
    temperatures = make_schedule(s.schedule, s.temperatures)
    q0 = initial_distribution(model, x, s.initial)
    path = TemperedPath(flat_target if replay else (lambda z: model.log_joint(x, z)), q0)
    # The transition at β = 1 would change no weight: skip it (final_transition=False).
    return adaptive_ais(path, chain_starts(q0, s.chains, generator), temperatures, s.step_size,
                        s.leapfrog_steps, generator, target=s.target_acceptance, rate=s.adaptation_rate,
                        final_transition=False, on_transition=on_transition)


class AISEstimator(Estimator):
    """`ais`: forward AIS from the prior or the encoder, step sizes adapted per point."""

    name = "ais"
    Settings = AISSettings
    columns = ("log_likelihood", "acceptance", "ess")

    def check(self, model: DeepLatentModel, data: Tensor, mask: Tensor | None) -> None:
        if mask is not None:
            raise EstimatorSettingError("log p(x_o) of incomplete data is estimated with the importance-weighted "
                                        "estimator only; use --estimator iw")
        check_ais_model(model, self.settings.initial)
        p = next(model.parameters())
        model.check_data(data.to(p.device, p.dtype))

    def batch(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None, generator: torch.Generator,
              replay: bool, progress: Progress | None) -> dict[str, Tensor] | None:
        # Progress in fractions of the batch's points after every transition, so that a long AIS run
        # moves its bar every few seconds instead of once per batch.
        points = x.shape[0]
        tick = None if progress is None else (lambda done, total: progress(points / total))
        result = forward_ais(model, x, self.settings, generator, tick, replay=replay)
        if replay:
            return None
        acceptance = result.acceptance.mean(0) if result.acceptance.numel() else \
            x.new_full((points,), float("nan"))
        return {"log_likelihood": result.log_marginal, "acceptance": acceptance, "ess": result.ess}

    def label(self) -> str:
        s = self.settings
        return ais_estimator_name(s.temperatures, s.chains, s.leapfrog_steps, s.initial)

    def tag(self) -> str:
        s = self.settings
        return f"ais-T{s.temperatures}-c{s.chains}-L{s.leapfrog_steps}-{s.initial}"

    def record(self, columns: dict[str, Tensor], seed: int, batch_size: int) -> dict[str, Any]:
        return {**vars(self.settings), "batch_size": batch_size, "seed": seed,
                "mean_acceptance": float(columns["acceptance"].mean()), "mean_ess": float(columns["ess"].mean())}


def ais_log_likelihood(model: DeepLatentModel, data: Tensor, batch_size: int = 100, seed: int = 0,
                       progress: Callable[[float], None] | None = None, shard: Shard | None = None,
                       **settings: Any) -> LogLikelihoodEstimate:
    """The AIS estimate of log p(x) for every row of `data` (the `ais` estimator through the batched
    driver), seeded so that it is reproducible; `settings` are those of AISSettings (chains,
    temperatures, leapfrog_steps, step_size, schedule, initial, target_acceptance, adaptation_rate).
    shard: this rank's part of a sharded evaluation (sharding.py); the result is the same.

    `progress`, if given, is called after every transition with the points it finished (fractions of a
    batch; tqdm's `update`). Mean acceptance and mean ESS over chains are recorded in the settings."""
    return estimate(AISEstimator(**settings), model, data, batch_size=batch_size, seed=seed,
                    progress=progress, shard=shard)


def ais_estimator_name(temperatures: int, chains: int, leapfrog_steps: int, initial: str) -> str:
    """The label a reported number carries, e.g. "AIS, T=1000, chains=16, L=10, from prior"."""
    return f"AIS, T={temperatures}, chains={chains}, L={leapfrog_steps}, from {initial}"
