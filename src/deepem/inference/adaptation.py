"""Step-size adaptation for HMC, kept outside the kernel: a pure function from (step size, observed
acceptance) to the next step size.

The rule is the multiplicative one of the AIS code of Wu et al. (2016): grow the step by a factor
(1 + rate) when acceptance is above the target, shrink it by the same factor when below. AIWAE
(Ding & Freedman, Sec. 5.1) and Wu et al. both aim at an acceptance rate of 0.6. The caller decides
what acceptance is averaged over (chains of one point: per-point step sizes; a whole batch at one
temperature: per-temperature step sizes)."""

from __future__ import annotations

import torch
from torch import Tensor

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
