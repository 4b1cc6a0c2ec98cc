"""Hamiltonian Monte Carlo (Neal 2011, "MCMC using Hamiltonian dynamics", the transition kernel of
AIWAE Alg. 1 and of the AIS evaluation of Wu et al. 2016), written blackjax-style as two pure
functions: `hmc_init` builds a state, `hmc_step` makes one transition. Tunables (step size, number of
leapfrog steps) are arguments of the step, so step-size adaptation lives outside the kernel
(`deepem.inference.adaptation`).

Many independent chains run at once: positions are shaped (C, B, Dz) (chains x data points x
latents) and the log density maps them to (C, B). Every (chain, point) pair is its own Markov chain,
with its own accept/reject decision, and may have its own step size.

Gradients with respect to the position come from `torch.autograd.grad` on a fresh leaf, and every
tensor a state or info holds is detached: no graph is kept from one step to the next, so memory does
not grow with the number of steps and nothing is back-propagated through a chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


class DensityValue(NamedTuple):
    """What a log density function may return instead of a bare tensor, to save work.

    `grad` is the gradient of `value` with respect to the position (None: the kernel differentiates
    `value` itself); `aux` holds per-(chain, point) tensors shaped (C, B, ...) that the caller wants
    carried along with the position (AIS keeps log q0(z) and log p(x, z) and their gradients here, so
    that moving to the next temperature needs no new evaluation)."""

    value: Tensor
    grad: Tensor | None = None
    aux: tuple[Tensor, ...] = ()


LogDensityFn = Callable[[Tensor], "Tensor | DensityValue"]


class HMCState(NamedTuple):
    """The position of every chain with its log density and gradient there (all detached)."""

    position: Tensor  # (C, B, Dz)
    log_density: Tensor  # (C, B)
    grad: Tensor  # (C, B, Dz)
    aux: tuple[Tensor, ...] = ()


class HMCInfo(NamedTuple):
    """What happened in one transition, per (chain, point)."""

    acceptance_prob: Tensor  # (C, B) min(1, exp(-ΔH)); 0 for a non-finite proposal
    is_accepted: Tensor  # (C, B) bool
    is_divergent: Tensor  # (C, B) bool: proposal non-finite or energy error above the threshold
    energy_error: Tensor  # (C, B) H(proposal) - H(current); +inf for a non-finite proposal


#: an energy error above this many nats marks a divergent trajectory (as in Stan and blackjax).
DIVERGENCE_THRESHOLD = 1000.0


def evaluate(log_density_fn: LogDensityFn, position: Tensor) -> HMCState:
    """Log density and its gradient at `position`, detached: the graph lives only inside this call.

    autograd.grad is asked for the gradient with respect to the position only, so parameters the
    density depends on (a decoder's θ) get no .grad and no graph outlives the call."""
    with torch.enable_grad():
        z = position.detach().requires_grad_(True)
        out = log_density_fn(z)
        if not isinstance(out, DensityValue):
            out = DensityValue(out)
        value = out.value
        if value.shape != position.shape[:-1]:
            raise ValueError(
                f"the log density must return one value per (chain, point), shaped "
                f"{tuple(position.shape[:-1])} for positions shaped {tuple(position.shape)}; "
                f"got {tuple(value.shape)}"
            )
        grad = out.grad
        if grad is None:
            # Each (chain, point) density depends on its own position only, so the gradient of the
            # sum is the per-(chain, point) gradient.
            (grad,) = torch.autograd.grad(value.sum(), z) if value.requires_grad else (torch.zeros_like(z),)
    return HMCState(position.detach(), value.detach(), grad.detach(), tuple(a.detach() for a in out.aux))


def hmc_init(position: Tensor, log_density_fn: LogDensityFn) -> HMCState:
    """The state of chains at `position` (C, B, Dz) under `log_density_fn` ((C, B, Dz) -> (C, B))."""
    if position.dim() < 2:
        raise ValueError(f"positions must be shaped (..., latent_dim), got {tuple(position.shape)}")
    return evaluate(log_density_fn, position)


def _broadcast_step(step_size: float | Tensor, like: Tensor) -> Tensor:
    """A step size broadcastable to the (C, B) batch, with a trailing axis for the latents."""
    step = torch.as_tensor(step_size, dtype=like.dtype, device=like.device)
    batch = like.shape[:-1]
    try:
        torch.broadcast_shapes(step.shape, batch)
    except RuntimeError as err:
        raise ValueError(
            f"step_size shaped {tuple(step.shape)} does not broadcast to the chains' batch shape "
            f"{tuple(batch)}; pass a float, one value per point (B,), or one per (chain, point) (C, B)"
        ) from err
    return step.unsqueeze(-1) if step.dim() > 0 else step


def leapfrog(state: HMCState, momentum: Tensor, log_density_fn: LogDensityFn, step_size: Tensor,
             leapfrog_steps: int) -> tuple[HMCState, Tensor]:
    """L leapfrog steps of size ε from (state, momentum) (Neal 2011, eq. 5.18-5.20): L gradient
    evaluations, the first half-step reusing the gradient the state already holds."""
    z, p = state.position, momentum + 0.5 * step_size * state.grad
    new = state
    for i in range(leapfrog_steps):
        z = z + step_size * p
        new = evaluate(log_density_fn, z)
        if i < leapfrog_steps - 1:
            p = p + step_size * new.grad
    p = p + 0.5 * step_size * new.grad
    return new, p


def _select(accept: Tensor, new: Tensor, old: Tensor) -> Tensor:
    mask = accept.reshape(accept.shape + (1,) * (new.dim() - accept.dim()))
    return torch.where(mask, new, old)


def hmc_step(state: HMCState, log_density_fn: LogDensityFn, step_size: float | Tensor, leapfrog_steps: int,
             generator: torch.Generator | None = None) -> tuple[HMCState, HMCInfo]:
    """One HMC transition for every (chain, point): fresh N(0, I) momentum, L leapfrog steps of size
    `step_size` (a float or a tensor broadcastable to (C, B)), then a Metropolis accept/reject.

    The transition leaves exp(log_density_fn) invariant for each (chain, point) separately. A
    proposal whose position, log density or gradient is not finite is rejected."""
    if leapfrog_steps < 1:
        raise ValueError(f"leapfrog_steps (L) must be >= 1, got {leapfrog_steps}")
    z0 = state.position
    step = _broadcast_step(step_size, z0)
    p0 = torch.randn(z0.shape, generator=generator, dtype=z0.dtype, device=z0.device)
    proposal, p1 = leapfrog(state, p0, log_density_fn, step, leapfrog_steps)

    # H = -log density + |p|^2 / 2; accept with probability min(1, exp(H0 - H1)).
    h0 = -state.log_density + 0.5 * p0.pow(2).sum(-1)
    h1 = -proposal.log_density + 0.5 * p1.pow(2).sum(-1)
    finite = (torch.isfinite(h1)
              & torch.isfinite(proposal.position).all(-1)
              & torch.isfinite(proposal.grad).all(-1))
    energy_error = torch.where(finite, h1 - h0, torch.full_like(h1, float("inf")))
    log_accept = torch.clamp(-energy_error, max=0.0)  # -inf where rejected outright
    u = torch.rand(log_accept.shape, generator=generator, dtype=z0.dtype, device=z0.device)
    accept = finite & (torch.log(u) < log_accept)

    new_state = HMCState(
        _select(accept, proposal.position, z0),
        _select(accept, proposal.log_density, state.log_density),
        _select(accept, proposal.grad, state.grad),
        tuple(_select(accept, a, b) for a, b in zip(proposal.aux, state.aux, strict=True)),
    )
    info = HMCInfo(torch.exp(log_accept), accept, ~finite | (energy_error > DIVERGENCE_THRESHOLD),
                   energy_error)
    return new_state, info
