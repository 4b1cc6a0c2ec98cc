"""Annealed importance sampling (Neal 2001) along the geometric path
f_β(z) = q0(z)^(1 - β) p(x, z)^β, 0 = β_0 < ... < β_{T-1} = 1 (AIWAE eq. 7-8 and Alg. 1), written
as blackjax writes tempered SMC: `ais_init` builds a state, `ais_step(state, temperature, path, kernel,
kernel_params)` reweights the chains to the next temperature and moves them with the transition kernel
passed in (HMC, `deepem.inference.hmc.hmc_step`). Tuning the kernel (step-size adaptation,
`deepem.inference.adaptation`) and reporting progress are the drivers' business, not the step's.

K chains run for every data point at once (positions (K, B, Dz)). The log-weight of a chain is
    log w = sum_{t=1}^{T-1} (β_t - β_{t-1}) [log p(x, z^{t-1}) - log q0(z^{t-1})]      (AIWAE eq. 8)
and logmeanexp over chains is a stochastic lower bound on log p(x) (Grosse et al. 2015).

Run in reverse (temperatures from 1 to 0) from an exact posterior sample, the same step gives
log-weights whose negated logmeanexp is a stochastic upper bound on log p(x): the other half of BDMC
(Grosse et al. 2015; Wu et al. 2016).

No graph is kept across temperatures: states are detached, so memory does not grow with T and
nothing is back-propagated through the chains (AIWAE, Sec. 3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from deepem.inference.distributions import DiagonalGaussian, standard_normal
from deepem.inference.hmc import DensityValue, HMCInfo, HMCState, LogDensityFn, evaluate, hmc_step
from deepem.inference.numerics import effective_sample_size, log_mean_exp
from deepem.inference.temperatures import (
    TEMPERATURE_SCHEDULES,
    linear_schedule,
    make_schedule,
    sigmoid_schedule,
)

__all__ = ["AISResult", "AISState", "DiagonalGaussian", "InitialDistribution", "TEMPERATURE_SCHEDULES",
           "TemperedPath", "TransitionKernel", "ais", "ais_init", "ais_step", "check_path", "hmc_step", "path_values",
           "linear_schedule", "make_schedule", "reweight", "sigmoid_schedule", "standard_normal"]


class InitialDistribution(Protocol):
    """A normalised, easy-to-sample density q0(z) for every data point: the start of the path."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws per data point, shaped (n, B, Dz)."""
        ...

    def log_prob(self, z: Tensor) -> Tensor:
        """log q0(z) for z shaped (..., B, Dz), returning (..., B); differentiable in z."""
        ...


class TransitionKernel(Protocol):
    """An MCMC transition leaving exp(log_density_fn) invariant, as `hmc_step`: its tunables
    (step_size, leapfrog_steps) come as keyword arguments, the `kernel_params` of `ais_step`."""

    def __call__(self, state: HMCState, log_density_fn: LogDensityFn, *,
                 generator: torch.Generator | None = None, **params: Any) -> tuple[HMCState, HMCInfo]: ...


@dataclass(frozen=True)
class TemperedPath:
    """The geometric path from q0 = `initial` to p(x, z) = exp(`log_target`): z (K, B, Dz) -> (K, B)."""

    log_target: Callable[[Tensor], Tensor]
    initial: InitialDistribution

    def density(self, temperature: float) -> LogDensityFn:
        """log f_β(z) = (1 - β) log q0(z) + β log p(x, z) with its gradient, and as auxiliaries log q0,
        log p and their gradients, so that a state can be moved to another β for free (`reweight`)."""
        log_target, initial, beta = self.log_target, self.initial, temperature

        def log_density(z: Tensor) -> DensityValue:
            log_p = log_target(z)
            # Gradient w.r.t. z only: parameters log_target depends on (θ) get no .grad.
            (grad_p,) = torch.autograd.grad(log_p.sum(), z) if log_p.requires_grad else (torch.zeros_like(z),)
            log_p = log_p.detach()
            if hasattr(initial, "log_prob_and_grad"):
                log_q, grad_q = initial.log_prob_and_grad(z)
            else:  # any other q0: a second (cheap) backward pass on its own graph
                log_q = initial.log_prob(z)
                (grad_q,) = torch.autograd.grad(log_q.sum(), z) if log_q.requires_grad else (torch.zeros_like(z),)
                log_q = log_q.detach()
            return DensityValue((1.0 - beta) * log_q + beta * log_p, (1.0 - beta) * grad_q + beta * grad_p,
                                (log_q, log_p, grad_q, grad_p))

        return log_density


class AISState(NamedTuple):
    """The chains at one temperature: the kernel's state under f_β (positions (K, B, Dz), with log q0
    and log p in its aux) and every chain's log-weight so far (K, B)."""

    kernel_state: HMCState
    log_weights: Tensor
    temperature: float

    @property
    def position(self) -> Tensor:
        return self.kernel_state.position


def ais_init(path: TemperedPath, position: Tensor, temperature: float = 0.0) -> AISState:
    """Chains at `position` (K, B, Dz) under f_`temperature`, with zero log-weights."""
    kernel_state = evaluate(path.density(temperature), position.detach())
    return AISState(kernel_state, position.new_zeros(position.shape[:2]), float(temperature))


def reweight(state: AISState, temperature: float) -> AISState:
    """The chains' weights carried to the next temperature, positions unchanged:
    log w += log f_β'(z) - log f_β(z) = (β' - β) [log p(x, z) - log q0(z)]."""
    log_q, log_p, grad_q, grad_p = state.kernel_state.aux
    log_weights = state.log_weights + (temperature - state.temperature) * (log_p - log_q)
    ks = state.kernel_state
    retempered = HMCState(ks.position, (1.0 - temperature) * log_q + temperature * log_p,
                          (1.0 - temperature) * grad_q + temperature * grad_p, ks.aux)
    return AISState(retempered, log_weights, float(temperature))


def ais_step(state: AISState, temperature: float, path: TemperedPath, kernel: TransitionKernel,
             kernel_params: dict[str, Any], generator: torch.Generator | None = None
             ) -> tuple[AISState, HMCInfo]:
    """One AIS step: reweight to `temperature`, then one transition of `kernel` leaving f_temperature
    invariant, tuned by `kernel_params` (for HMC: step_size, leapfrog_steps)."""
    state = reweight(state, temperature)
    kernel_state, info = kernel(state.kernel_state, path.density(temperature), generator=generator,
                                **kernel_params)
    return AISState(kernel_state, state.log_weights, state.temperature), info


def check_path(temperatures: Tensor) -> Tensor:
    """Temperatures in the order run, flat float64: from exactly 0 to exactly 1 (forward) or from 1 to 0
    (reverse), monotone, at least 2 of them."""
    t = torch.as_tensor(temperatures, dtype=torch.float64).flatten()
    path_values(t.tolist())
    return t


def path_values(temperatures: Tensor | Sequence[float]) -> list[float]:
    """The temperatures as Python floats, checked: from exactly 0 to exactly 1 or from 1 to 0, monotone,
    at least 2 of them. A method that runs AIS in every training step keeps these (read once, when it is
    built), so that its step reads no tensor on the host."""
    if isinstance(temperatures, Tensor):
        values = temperatures.to(torch.float64).flatten().tolist()
    else:
        values = [float(v) for v in temperatures]
    ends = (values[0], values[-1]) if len(values) >= 2 else None
    if ends not in ((0.0, 1.0), (1.0, 0.0)):
        raise ValueError("temperatures must run from exactly 0 to exactly 1 (or 1 to 0 in reverse) with at "
                         "least 2 values; build them with linear_schedule(T) or sigmoid_schedule(T)")
    steps = [b - a for a, b in zip(values[:-1], values[1:], strict=True)]
    if any(s < 0 for s in steps) if ends == (0.0, 1.0) else any(s > 0 for s in steps):
        raise ValueError("temperatures must be monotone")
    return values


@dataclass
class AISResult:
    """Per-(chain, point) log-weights and what the chains did.

    Forward: log_marginal = logmeanexp_k log w_k, a stochastic lower bound on log p(x).
    Reverse: log_marginal = -logmeanexp_k log w_k, a stochastic upper bound on log p(x)."""

    log_w: Tensor  # (K, B)
    samples: Tensor  # (K, B, Dz): positions after the last transition
    acceptance: Tensor  # (n_transitions, B): acceptance probability, mean over chains, per transition
    step_sizes: Tensor  # (n_transitions, *step shape): the step size each transition used
    reverse: bool = False

    @property
    def log_marginal(self) -> Tensor:
        """The per-point estimate of log p(x), shaped (B,)."""
        lme = log_mean_exp(self.log_w, dim=0)
        return -lme if self.reverse else lme

    @property
    def ess(self) -> Tensor:
        """Kish's effective sample size over chains, per point (B,): between 1 and K."""
        return effective_sample_size(self.log_w, dim=0)

    @property
    def mean_acceptance(self) -> float:
        return float(self.acceptance.mean()) if self.acceptance.numel() else float("nan")


def result_of(state: AISState, acceptance: list[Tensor], used: list[Tensor], reverse: bool) -> AISResult:
    """The AISResult of a finished run from its last state and per-transition records."""
    b = state.position.shape[1]
    acc = torch.stack(acceptance) if acceptance else state.position.new_zeros(0, b)
    steps = torch.stack(torch.broadcast_tensors(*used)) if used else state.position.new_zeros(0)
    return AISResult(state.log_weights, state.position, acc, steps, reverse)


def ais(path: TemperedPath, position: Tensor, temperatures: Tensor | Sequence[float],
        step_size: float | Tensor | Sequence[float | Tensor], leapfrog_steps: int,
        generator: torch.Generator | None = None, *, final_transition: bool = True) -> AISResult:
    """AIS with a fixed HMC kernel, chains started at `position` (K, B, Dz), along `temperatures` in the
    order given: 0 -> 1 from draws of q0 (forward), 1 -> 0 from exact posterior samples (reverse, BDMC);
    a tensor, or Python floats (`path_values`: then nothing here reads a tensor on the host).

    step_size: a float or tensor broadcastable to (K, B) used at every transition, or a list with one
        entry per transition (T - 1), indexed in the order run.
    final_transition: make the transition at the last temperature too. It changes no weight, only the
        returned samples (AIWAE Alg. 1 uses them at β = 1); estimation alone can skip it."""
    values = path_values(temperatures)
    n_transitions = len(values) - 1
    if isinstance(step_size, (list, tuple)):
        if len(step_size) != n_transitions:
            raise ValueError(f"got {len(step_size)} step sizes for {n_transitions} transitions; pass one "
                             "per temperature after the first (T - 1)")
        steps = [torch.as_tensor(s, dtype=position.dtype, device=position.device) for s in step_size]
    else:
        steps = [torch.as_tensor(step_size, dtype=position.dtype, device=position.device)] * n_transitions
    state = ais_init(path, position, values[0])
    acceptance, used = [], []
    for t in range(1, n_transitions + 1):
        if t == n_transitions and not final_transition:
            state = reweight(state, values[t])
            break
        params = {"step_size": steps[t - 1], "leapfrog_steps": leapfrog_steps}
        state, info = ais_step(state, values[t], path, hmc_step, params, generator)
        acceptance.append(info.acceptance_prob.mean(0))  # (B,): over the point's chains
        used.append(steps[t - 1])
    return result_of(state, acceptance, used, reverse=values[0] == 1.0)


def chain_starts(initial: InitialDistribution, chains: int, generator: torch.Generator | None = None,
                 start: Tensor | None = None) -> Tensor:
    """Positions (chains, B, Dz) to start from: draws of q0, or `start` ((B, Dz) repeated, or (chains,
    B, Dz)), e.g. exact posterior samples for reverse AIS."""
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    if start is None:
        return initial.sample(chains, generator)
    z0 = start.detach()
    if z0.dim() == 2:
        z0 = z0.expand(chains, *z0.shape)
    if z0.shape[0] != chains:
        raise ValueError(f"start must be shaped (chains={chains}, B, Dz) or (B, Dz), got {tuple(start.shape)}")
    return z0
