"""The Gaussian log densities of the code base (q, the Gaussian likelihoods, the priors, REM's s(z))."""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def normal_log_density(value: Tensor, mean: Tensor | float, std: Tensor | None = None, *,
                       log_std: Tensor | None = None) -> Tensor:
    """log N(value; mean, std^2) per element (not summed), from std or from log_std: the one Gaussian
    density of the code base (q, the Gaussian likelihoods and the priors use it)."""
    if log_std is None:
        if std is None:
            raise ValueError("give std or log_std")
        r, log_std = (value - mean) / std, torch.log(std)
    else:
        r = (value - mean) * torch.exp(-log_std)
    return -0.5 * r.pow(2) - log_std - 0.5 * LOG_2PI


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over the last dimension (the special case without parameters)."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)
