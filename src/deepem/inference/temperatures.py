"""Temperature schedules of annealed importance sampling: T inverse temperatures
0 = β_0 < ... < β_{T-1} = 1 along the geometric path q0^(1-β) p^β (AIWAE eq. 7; Neal 2001).

(Not to be confused with the learning-rate schedules of `deepem.training.schedules`.)"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _check_count(temperatures: int) -> None:
    if temperatures < 2:
        raise ValueError(f"AIS needs at least 2 temperatures (β=0 and β=1), got {temperatures}")


def linear_schedule(temperatures: int) -> Tensor:
    """T inverse temperatures evenly spaced from 0 to 1 (AIWAE Sec. 5.1: β_t = t / (T - 1))."""
    _check_count(temperatures)
    return torch.linspace(0.0, 1.0, temperatures, dtype=torch.float64)


def sigmoid_schedule(temperatures: int, rad: float = 4.0) -> Tensor:
    """T inverse temperatures from 0 to 1, dense near both ends: a sigmoid of a uniform grid on
    [-rad, rad], rescaled to start at exactly 0 and end at exactly 1 (Grosse et al. 2015; Wu et al.
    2016)."""
    _check_count(temperatures)
    if rad <= 0:
        raise ValueError(f"rad must be > 0, got {rad}")
    s = torch.sigmoid(torch.linspace(-rad, rad, temperatures, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


#: AIS temperature schedules by name.
TEMPERATURE_SCHEDULES: dict[str, Callable[[int], Tensor]] = {"linear": linear_schedule,
                                                              "sigmoid": sigmoid_schedule}


def make_schedule(name: str, temperatures: int) -> Tensor:
    """A temperature schedule by name ("linear" or "sigmoid"): T float64 values from 0 to 1."""
    if name not in TEMPERATURE_SCHEDULES:
        raise ValueError(f"unknown AIS schedule {name!r}; choose one of {sorted(TEMPERATURE_SCHEDULES)}")
    return TEMPERATURE_SCHEDULES[name](temperatures)


def check_temperatures(temperatures: Tensor) -> Tensor:
    """`temperatures` as a flat float64 tensor, checked: from exactly 0 to exactly 1, non-decreasing."""
    temperatures = torch.as_tensor(temperatures, dtype=torch.float64).flatten()
    if temperatures.numel() < 2 or float(temperatures[0]) != 0.0 or float(temperatures[-1]) != 1.0:
        raise ValueError("temperatures must run from exactly 0 to exactly 1 with at least 2 values; "
                         "build them with linear_schedule(T) or sigmoid_schedule(T)")
    if bool((temperatures[1:] < temperatures[:-1]).any()):
        raise ValueError("temperatures must be non-decreasing")
    return temperatures
