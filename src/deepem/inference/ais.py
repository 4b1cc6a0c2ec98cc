"""Annealed importance sampling (Neal 2001) along the geometric path
f_t(z) = q0(z)^(1 - β_t) p(x, z)^(β_t), 0 = β_0 < ... < β_{T-1} = 1 (AIWAE eq. 7-8 and Alg. 1),
with one HMC transition (L leapfrog steps) per temperature.

AIS is a tempering loop over the HMC kernel of `deepem.inference.hmc`. K chains run for every data
point at once (positions (K, B, Dz)). The log-weight of a chain is
    log w = sum_{t=1}^{T-1} (β_t - β_{t-1}) [log p(x, z^{t-1}) - log q0(z^{t-1})]      (AIWAE eq. 8)
and logmeanexp over chains is a stochastic lower bound on log p(x) (Grosse et al. 2015).

Run in reverse (β from 1 to 0) from an exact posterior sample, the same loop gives log-weights whose
negated logmeanexp is a stochastic upper bound on log p(x): the other half of BDMC (Grosse et al.
2015; Wu et al. 2016).

No graph is kept across temperatures: states are detached, so memory does not grow with T and
nothing is back-propagated through the chains (AIWAE, Sec. 3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from deepem.inference.adaptation import TARGET_ACCEPTANCE, adapt_step_size
from deepem.inference.distributions import DiagonalGaussian, standard_normal
from deepem.inference.hmc import DensityValue, HMCState, LogDensityFn, evaluate, hmc_step
from deepem.inference.numerics import effective_sample_size, log_mean_exp


# initial distributions -------------------------------------------------------------------------
class InitialDistribution(Protocol):
    """A normalised, easy-to-sample density q0(z) for every data point: the start of the path."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws per data point, shaped (n, B, Dz)."""
        ...

    def log_prob(self, z: Tensor) -> Tensor:
        """log q0(z) for z shaped (..., B, Dz), returning (..., B); differentiable in z."""
        ...


__all__ = ["AISResult", "DiagonalGaussian", "InitialDistribution", "ais", "make_schedule", "standard_normal"]


# schedules -------------------------------------------------------------------------------------
def _check_temperatures(temperatures: int) -> None:
    if temperatures < 2:
        raise ValueError(f"AIS needs at least 2 temperatures (β=0 and β=1), got {temperatures}")


def linear_schedule(temperatures: int) -> Tensor:
    """T inverse temperatures evenly spaced from 0 to 1 (AIWAE Sec. 5.1: β_t = t / (T - 1))."""
    _check_temperatures(temperatures)
    return torch.linspace(0.0, 1.0, temperatures, dtype=torch.float64)


def sigmoid_schedule(temperatures: int, rad: float = 4.0) -> Tensor:
    """T inverse temperatures from 0 to 1, dense near both ends: a sigmoid of a uniform grid on
    [-rad, rad], rescaled to start at exactly 0 and end at exactly 1 (Grosse et al. 2015; Wu et al.
    2016)."""
    _check_temperatures(temperatures)
    if rad <= 0:
        raise ValueError(f"rad must be > 0, got {rad}")
    s = torch.sigmoid(torch.linspace(-rad, rad, temperatures, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


SCHEDULES: dict[str, Callable[[int], Tensor]] = {"linear": linear_schedule, "sigmoid": sigmoid_schedule}


def make_schedule(name: str, temperatures: int) -> Tensor:
    """A schedule by name: "linear" or "sigmoid"."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown AIS schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](temperatures)


# the tempered density --------------------------------------------------------------------------
def tempered_density(log_target: Callable[[Tensor], Tensor], initial: InitialDistribution,
                     beta: float) -> LogDensityFn:
    """log f_β(z) = (1 - β) log q0(z) + β log p(x, z), returning its gradient and, as auxiliaries,
    log q0, log p and their gradients, so that the state can be moved to another β for free."""

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
        return DensityValue(
            (1.0 - beta) * log_q + beta * log_p,
            (1.0 - beta) * grad_q + beta * grad_p,
            (log_q, log_p, grad_q, grad_p),
        )

    return log_density


def retemper(state: HMCState, beta: float) -> HMCState:
    """The same positions under f_β, from the log q0 / log p parts the state carries."""
    log_q, log_p, grad_q, grad_p = state.aux
    return HMCState(state.position, (1.0 - beta) * log_q + beta * log_p,
                    (1.0 - beta) * grad_q + beta * grad_p, state.aux)


# the annealing loop ----------------------------------------------------------------------------
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


def _step_sizes(step_size: float | Tensor | Sequence[float | Tensor], n_transitions: int, adapt: bool,
                like: Tensor) -> Tensor | list[Tensor]:
    """One step-size tensor used at every transition, or a list with one entry per transition."""
    if isinstance(step_size, (list, tuple)):
        if adapt:
            raise ValueError("pass one step size (not one per transition) when adapting it during the run")
        if len(step_size) != n_transitions:
            raise ValueError(f"got {len(step_size)} step sizes for {n_transitions} transitions; pass one "
                             "per temperature after the first (T - 1)")
        return [torch.as_tensor(s, dtype=like.dtype, device=like.device) for s in step_size]
    eps = torch.as_tensor(step_size, dtype=like.dtype, device=like.device)
    if adapt:  # adapted per point: give it the (B,) batch shape from the start
        eps = eps.expand(torch.broadcast_shapes(eps.shape, like.shape[1:2])).clone()
    return eps


def ais(log_target: Callable[[Tensor], Tensor], initial: InitialDistribution, betas: Tensor, chains: int,
        step_size: float | Tensor | Sequence[float | Tensor], leapfrog_steps: int = 10,
        generator: torch.Generator | None = None, *, adapt: bool = False,
        target_acceptance: float = TARGET_ACCEPTANCE, adaptation_rate: float = 0.02,
        start: Tensor | None = None, reverse: bool = False, final_transition: bool = True,
        on_transition: Callable[[int, int], None] | None = None) -> AISResult:
    """Run `chains` AIS chains per data point from q0 = `initial` to p(x, z) = exp(`log_target`).

    log_target: z (K, B, Dz) -> log p(x, z) (K, B); betas: increasing inverse temperatures from 0 to 1.
    step_size: a float or tensor broadcastable to (K, B), used at every transition, or a list with one
        entry per transition (T - 1 of them). With adapt=True a single step size is adapted per data
        point after every transition toward `target_acceptance` (mean acceptance over the point's chains),
        as Wu et al. (2016) do; the sizes used are returned in `step_sizes`. (Strictly, a kernel tuned
        on the chains' own past makes the weights only approximately unbiased; in the tests the bias is
        far below the Monte Carlo error. For exact AIS pass fixed per-transition sizes, e.g. from a
        pilot run's `step_sizes`.)
    start: initial positions (K, B, Dz) or (B, Dz); default: draws from `initial`.
    reverse: anneal from β = 1 to β = 0 instead; `start` must then be exact samples of p(z | x), and
        the result's log_marginal is a stochastic upper bound (BDMC). A per-transition step-size list
        is indexed by transition in the order run.
    on_transition: called after every transition with (done, total): progress for long runs.
    final_transition: make the transition at the last temperature too. It changes no weight, only the
        returned samples (AIWAE Alg. 1 uses them at β = 1); estimation alone can skip it.
    """
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
    if betas.numel() < 2 or float(betas[0]) != 0.0 or float(betas[-1]) != 1.0:
        raise ValueError("betas must run from exactly 0 to exactly 1 with at least 2 values; "
                         "build them with linear_schedule(T) or sigmoid_schedule(T)")
    if bool((betas[1:] < betas[:-1]).any()):
        raise ValueError("betas must be non-decreasing")
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    if leapfrog_steps < 1:
        raise ValueError(f"leapfrog_steps (L) must be >= 1, got {leapfrog_steps}")
    path = betas.flip(0) if reverse else betas
    path_values = path.tolist()
    n_transitions = len(path_values) - 1

    if start is None:
        if reverse:
            raise ValueError("reverse AIS starts from exact posterior samples: pass start=z, z ~ p(z | x)")
        z0 = initial.sample(chains, generator)
    else:
        z0 = start.detach()
        if z0.dim() == 2:
            z0 = z0.expand(chains, *z0.shape)
        if z0.shape[0] != chains:
            raise ValueError(f"start must be shaped (chains={chains}, B, Dz) or (B, Dz), "
                             f"got {tuple(start.shape)}")

    eps = _step_sizes(step_size, n_transitions, adapt, z0)
    state = evaluate(tempered_density(log_target, initial, path_values[0]), z0)
    log_w = torch.zeros(z0.shape[:2], dtype=z0.dtype, device=z0.device)
    acceptance, used = [], []
    for t in range(1, n_transitions + 1):
        beta_prev, beta = path_values[t - 1], path_values[t]
        log_q, log_p = state.aux[0], state.aux[1]
        log_w = log_w + (beta - beta_prev) * (log_p - log_q)  # log f_t(z^{t-1}) - log f_{t-1}(z^{t-1})
        if t == n_transitions and not final_transition:
            break
        eps_t = eps[t - 1] if isinstance(eps, list) else eps
        fn = tempered_density(log_target, initial, beta)
        state, info = hmc_step(retemper(state, beta), fn, eps_t, leapfrog_steps, generator)
        accept_t = info.acceptance_prob.mean(0)  # (B,): over the point's chains
        acceptance.append(accept_t)
        used.append(eps_t)
        if adapt:
            eps = adapt_step_size(eps, accept_t, target_acceptance, adaptation_rate)
        if on_transition is not None:  # progress reporting: (transitions done, transitions in all)
            on_transition(t, n_transitions - (0 if final_transition else 1))

    b = z0.shape[1]
    acc = torch.stack(acceptance) if acceptance else z0.new_zeros(0, b)
    steps = torch.stack(torch.broadcast_tensors(*used)) if used else z0.new_zeros(0)
    return AISResult(log_w, state.position, acc, steps, reverse)
