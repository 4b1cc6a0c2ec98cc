"""The step's device choices, made once when a TrainStep is built (not tested again at every call):

- the region every step runs in: on CPU denormals flushed on every thread (inference/denormals.py: the
  self-normalised weights of hopeless particles make denormal products, several times slower on CPU);
  elsewhere nothing;
- where the non-finite decision is made. `host`: the step reads one flag (losses, log-weights and
  gradients checked together, training/guards.py) and applies nothing when it is set; one synchronisation
  per step, which on CPU costs nothing (the CPU has finished by then). `device`: the flag stays a device
  tensor and the fused Adam kernels read it themselves (their `found_inf`, as a loss scaler drives them),
  so a non-finite step changes no parameter and no optimiser state without the host waiting; the host
  reads the flag only when it asks what happened (`StepResult.settled`). The default is `device` on
  CUDA and `host` elsewhere.

The device path needs every optimiser fused (training/optim.py makes them so on CPU and CUDA), one step
per group per batch, and no data-parallel hook (its ranks agree on a problem through the host); a step
that lacks one of these keeps the host decision, and asking for `device` then is an error naming why."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from deepem.inference.numerics import flush_denormals

DECISIONS = ("host", "device")


@dataclass(frozen=True)
class StepDevice:
    """kind: the device type ('cpu', 'cuda', ...); region: the context every step runs in;
    decision: where the non-finite decision is made by default ('host' or 'device')."""

    kind: str
    region: Callable[[], AbstractContextManager[None]]
    decision: str


def step_device(device: torch.device | str) -> StepDevice:
    """The choices for a step whose parameters live on `device`."""
    kind = torch.device(device).type
    if kind == "cpu":
        return StepDevice(kind, flush_denormals, "host")
    return StepDevice(kind, nullcontext, "device" if kind == "cuda" else "host")


def device_decision_blocker(optimizers: Mapping[str, torch.optim.Optimizer], steps: Mapping[str, int],
                            data_parallel: bool) -> str:
    """Why the device decision cannot run this step ('' when it can)."""
    unfused = [g for g, opt in optimizers.items() if not opt.defaults.get("fused")]
    if unfused:
        return f"the optimisers of {unfused} are not fused (found-inf needs the fused Adam kernel)"
    several = [g for g, n in steps.items() if n > 1]
    if several:
        return f"groups {several} take several steps per batch (each extra step is decided on the host)"
    if data_parallel:
        return "data-parallel ranks agree on a non-finite step through the host"
    return ""
