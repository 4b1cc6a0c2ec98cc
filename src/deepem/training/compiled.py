"""The `compile` setting: the step's forward pass (the method's losses and log-weights, the networks in
it) compiled by torch.compile (inductor); the backward pass is compiled with it by AOTAutograd. The
optimiser, the non-finite decision and the RNG stay as they are: random numbers are drawn by the same
generator calls as the eager step's (inductor's `fallback_random`), so a compiled step draws what the
eager one draws and its losses equal the eager step's to float rounding.

Compilation happens at the first step of each batch shape (the epoch's last, shorter batch compiles
once more): a minute or more on a CPU, seconds on a GPU. Inductor needs a C++ compiler on CPU and
Triton on CUDA; without one the setting is refused in one line before anything runs.

Not yet measured on a GPU (docs/speed.md): benchmarks/gpu.py times it against the eager step."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from typing import TypeVar

import torch

from deepem.errors import UserError

F = TypeVar("F", bound=Callable)


class CompileError(UserError, RuntimeError):
    """torch.compile cannot run here; the message says what is missing."""


def check_compilable(device: torch.device | str) -> None:
    """CompileError unless inductor can build kernels for `device`."""
    kind = torch.device(device).type
    if kind == "cpu":
        compilers = [c for c in (os.environ.get("CXX"), "g++", "c++", "clang++") if c]
        if not any(shutil.which(c) for c in compilers):
            raise CompileError("--compile needs a C++ compiler on CPU (g++, c++ or clang++ on PATH, or $CXX); "
                               "install one or train without --compile")
    elif kind == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise CompileError("--compile needs Triton on CUDA (pip install triton); train without --compile")
    else:
        raise CompileError(f"--compile runs on cpu or cuda, not {kind}; train without --compile")


def compiled(fn: F, device: torch.device | str) -> F:
    """`fn` compiled for `device` (CompileError when it cannot be), drawing random numbers as eager does."""
    check_compilable(device)
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    return torch.compile(fn)
