"""Step-size adaptation for HMC, kept outside the kernel: a pure function from (step size, observed
acceptance) to the next step size.

The rule is the multiplicative one of the AIS code of Wu et al. (2016): grow the step by a factor
(1 + rate) when acceptance is above the target, shrink it by the same factor when below. AIWAE
(Ding & Freedman, Sec. 5.1) and Wu et al. both aim at an acceptance rate of 0.6. The caller decides
what acceptance is averaged over (chains of one point: per-point step sizes; a whole batch at one
temperature: per-temperature step sizes).

`adaptive_ais` is the AIS driver that adapts between steps (the evaluation of Wu et al.)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from deepem.inference.ais import AISResult, TemperedPath, ais_init, ais_step, check_path, result_of, reweight
from deepem.inference.hmc import hmc_step

#: the acceptance rate AIWAE and Wu et al. (2016) tune HMC to.
TARGET_ACCEPTANCE = 0.6


def adapt_step_size(step_size: Tensor, acceptance: Tensor, target: float = TARGET_ACCEPTANCE,
                    rate: float = 0.02, min_step: float = 1e-4, max_step: float = 1.0) -> Tensor:
    """The next step size: step * (1 + rate) where acceptance > target, step / (1 + rate) elsewhere,
    clamped to [min_step, max_step]. `acceptance` broadcasts against `step_size`; a new tensor is
    returned (the input is not modified)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target acceptance must lie in (0, 1), got {target}")
    if rate <= 0.0:
        raise ValueError(f"adaptation rate must be > 0, got {rate}")
    if not 0.0 < min_step <= max_step:
        raise ValueError(f"need 0 < min_step <= max_step, got {min_step}, {max_step}")
    acceptance = acceptance.to(step_size.dtype)
    grown, shrunk = step_size * (1.0 + rate), step_size / (1.0 + rate)
    return torch.where(acceptance > target, grown, shrunk).clamp(min_step, max_step)


def adaptive_ais(path: TemperedPath, position: Tensor, temperatures: Tensor, step_size: float | Tensor,
                 leapfrog_steps: int, generator: torch.Generator | None = None, *,
                 target: float = TARGET_ACCEPTANCE, rate: float = 0.02, final_transition: bool = True,
                 on_transition: Callable[[int, int], None] | None = None) -> AISResult:
    """AIS (`deepem.inference.ais`) whose HMC step size is adapted per data point after every
    transition toward `target` (mean acceptance over the point's chains), as Wu et al. (2016) do; the
    sizes used are returned in the result's `step_sizes`. The step itself is `ais_step`: adaptation
    only chooses the kernel parameters it is given.

    (Strictly, a kernel tuned on the chains' own past makes the weights only approximately unbiased;
    in the tests the bias is far below the Monte Carlo error. For exact AIS run `ais` with fixed
    per-transition sizes, e.g. a pilot run's `step_sizes`.)
    on_transition: called after every transition with (done, total): progress for long runs."""
    path_values = check_path(temperatures).tolist()
    n_transitions = len(path_values) - 1
    moves = n_transitions - (0 if final_transition else 1)
    step = torch.as_tensor(step_size, dtype=position.dtype, device=position.device)
    # adapted per point: give it the (B,) batch shape from the start
    step = step.expand(torch.broadcast_shapes(step.shape, position.shape[1:2])).clone()
    state = ais_init(path, position, path_values[0])
    acceptance, used = [], []
    for t in range(1, n_transitions + 1):
        if t > moves:  # the last temperature only reweights
            state = reweight(state, path_values[t])
            break
        params = {"step_size": step, "leapfrog_steps": leapfrog_steps}
        state, info = ais_step(state, path_values[t], path, hmc_step, params, generator)
        accept_t = info.acceptance_prob.mean(0)  # (B,): over the point's chains
        acceptance.append(accept_t)
        used.append(step)
        step = adapt_step_size(step, accept_t, target, rate)
        if on_transition is not None:
            on_transition(t, moves)
    return result_of(state, acceptance, used, reverse=path_values[0] == 1.0)
