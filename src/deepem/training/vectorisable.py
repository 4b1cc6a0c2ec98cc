"""Which runs can be trained as vectorised seeds (training/vectorised.py), checked before anything is
built or written, and how many seeds go in one vmapped call."""

from __future__ import annotations

import torch

from deepem.errors import UserError
from deepem.methods.registry import METHODS
from deepem.training.config import TrainConfig

#: the model builder's architectures whose q(z|x) is the explicit MLP encoder's diagonal Gaussian
VECTORISABLE_ARCHITECTURES = ("mlp",)

#: on CPU, seeds per vmapped call are limited so that one call's (seeds, K, B, D) decoder output stays
#: about this many elements (16 MB in float32): larger calls fall out of cache and run slower than
#: sequential seeds (the measurement: docs/speed.md, "Thresholds in the code").
CPU_ELEMENTS_PER_CALL = 4_000_000


class VectorisationError(UserError, ValueError):
    """These settings cannot be trained as vectorised seeds; the message says what is supported."""


def vectorisable_methods() -> list[str]:
    """The registered methods whose class says its step can be vectorised (`Method.vectorisable`)."""
    return [name for name, cls in METHODS.items() if cls.vectorisable]


def check_vectorisable(config: TrainConfig) -> None:
    """Raise VectorisationError (one line naming what is supported) unless `config` can be vectorised."""
    supported = (f"vectorised seeds support methods {', '.join(vectorisable_methods())} with --architecture "
                 f"{'/'.join(VECTORISABLE_ARCHITECTURES)}, Gaussian latents, an explicit encoder, complete data, "
                 "one optimiser step per batch, --nan-policy stop and --precision 32")
    problems = []
    method = METHODS.get(config.method)
    if method is None or not method.vectorisable:
        problems.append(f"method {config.method!r}")
    if config.model.architecture not in VECTORISABLE_ARCHITECTURES:
        problems.append(f"architecture {config.model.architecture!r}")
    if config.model.latent != "gaussian":
        problems.append(f"latent {config.model.latent!r}")
    if config.model.encoder != "explicit":
        problems.append(f"encoder {config.model.encoder!r}")
    if config.missing is not None:
        problems.append(f"missing data {config.missing!r}")
    if config.nan_policy != "stop":  # per-seed skipping would desynchronise the shared Adam step count
        problems.append(f"nan_policy {config.nan_policy!r}")
    if getattr(config, "patience", 0):  # each seed would stop at its own epoch
        problems.append(f"early stopping (patience {config.patience})")
    if getattr(config, "validation_fraction", 0):  # each seed hides its own cells: masks differ by seed
        problems.append(f"held-out cells (validation_fraction {config.validation_fraction})")
    if getattr(config, "precision", "32") != "32":  # the vmapped step has no autocast region
        problems.append(f"precision {config.precision!r}")
    if getattr(config, "compile", False):  # the vmapped step is not the compiled TrainStep
        problems.append("--compile")
    if getattr(config, "cuda_graph", False):  # nor the graphed one
        problems.append("--cuda-graph")
    steps = {g: spec.get("steps", 1) for g, spec in config.optim.items() if spec.get("steps", 1) != 1}
    if steps:
        problems.append(f"several steps per batch {steps}")
    if problems:
        raise VectorisationError(f"cannot vectorise {', '.join(problems)}: {supported}; train such seeds "
                                 "one at a time (deepem train --seed N)")


def default_seeds_per_call(device: torch.device, elements_per_seed: int, seeds: int) -> int:
    """All seeds in one call on an accelerator; on CPU as many as keep a call's decoder output near
    CPU_ELEMENTS_PER_CALL (beyond that the batched tensors leave the caches and the group runs slower)."""
    if device.type != "cpu":
        return seeds
    return max(1, min(seeds, CPU_ELEMENTS_PER_CALL // max(elements_per_seed, 1)))
