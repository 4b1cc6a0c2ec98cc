"""Optimisation per parameter group: θ (decoder), φ (encoder) and any group a method owns (e.g. a
discriminator) each get their own Adam with their own learning rate, betas and steps per batch, as
optax's `partition` routes different transforms to different parameter labels.

The settings of a group come from `TrainConfig.optim[group]` (keys `lr`, `betas`, `steps`), else (lr of
theta and phi) the run's typed `lr`, else the method's paper settings, else lr 1e-3, betas (0.9, 0.999)
and one step: `settings_in_effect`, which also says where each came from. The learning-rate schedule
and the rollback scale multiply each group's own rate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepem.declarations.run import DEFAULT_LR, OPTIM_KEYS, check_optim_value
from deepem.methods.base import PHI, THETA, Method
from deepem.models.lvm import DeepLatentModel

DEFAULT_BETAS = (0.9, 0.999)


@dataclass(frozen=True)
class GroupOptim:
    """One group's Adam settings and how many optimiser steps it takes per batch."""

    lr: float
    betas: tuple[float, float] = DEFAULT_BETAS
    eps: float = 1e-4  # Burda et al. 2015
    steps: int = 1


def validate_optim(optim: Any, groups: tuple[str, ...] | None = None) -> None:
    """Raise ValueError naming the group, the key and what is allowed. `groups`: the names a method's
    parameter groups have (None: names are not checked, only values)."""
    if not isinstance(optim, dict):
        raise ValueError("must be a dictionary {group: {lr, betas, steps}}")
    for group, spec in optim.items():
        if groups is not None and group not in groups:
            raise ValueError(f"unknown parameter group {group!r}; this method's groups are {', '.join(groups)}")
        if not isinstance(spec, dict):
            raise ValueError(f"group {group!r}: must be a dictionary with keys among {', '.join(OPTIM_KEYS)}")
        unknown = sorted(set(spec) - set(OPTIM_KEYS))
        if unknown:
            raise ValueError(f"group {group!r}: unknown key {', '.join(unknown)}; allowed keys: "
                             f"{', '.join(OPTIM_KEYS)}")
        for key, value in spec.items():
            check_optim_value(group, key, value)  # (the check of --optim too: one per key)


TYPED, METHOD_DEFAULT, GLOBAL_DEFAULT = "typed", "method default", "global default"
#: the groups a typed --lr sets: the model's; a method's own groups (a discriminator) keep its rate
MODEL_GROUPS = (THETA, PHI)


def settings_in_effect(groups: tuple[str, ...] | list[str], method_defaults: Mapping[str, Mapping[str, Any]],
                       optim: Mapping[str, Mapping[str, Any]], lr: float | None, global_lr: float,
                       sources: Mapping[str, Mapping[str, str]] | None = None
                       ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """Every group's lr, betas and steps in effect, and where each came from: what the user set for the
    group (`optim`, typed), then for theta and phi a typed base rate `lr`, then the method's paper setting
    (`Method.default_optim`), then the global default (global_lr, DEFAULT_BETAS, 1 step).

    `sources`: the recorded origin of values already in `optim` (a resumed run's config.json; absent:
    typed), so that applying this again to its own result changes nothing."""
    sources = sources or {}
    global_defaults = {"lr": global_lr, "betas": list(DEFAULT_BETAS), "steps": 1}
    effect: dict[str, dict[str, Any]] = {}
    origin: dict[str, dict[str, str]] = {}
    for g in groups:
        effect[g], origin[g] = {}, {}
        for key, fallback in global_defaults.items():
            if key in optim.get(g, {}):
                value, where = optim[g][key], sources.get(g, {}).get(key, TYPED)
            elif key == "lr" and lr is not None and (g in MODEL_GROUPS or g not in method_defaults):
                value, where = lr, TYPED
            elif key in method_defaults.get(g, {}):
                value, where = method_defaults[g][key], METHOD_DEFAULT
            else:
                value, where = fallback, GLOBAL_DEFAULT
            effect[g][key] = list(value) if key == "betas" else value
            origin[g][key] = where
    for g in optim:  # a group the method does not have: kept, for validate_optim to name
        if g not in effect:
            effect[g], origin[g] = dict(optim[g]), {k: TYPED for k in optim[g]}
    return effect, origin


def in_effect(recorded: Mapping[str, Mapping[str, Any]], lr: float | None,
              like: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A recorded run's settings in effect for the groups of `like` (to compare a resumed run's with it):
    what `recorded` names, else the run's lr, else the global defaults."""
    return settings_in_effect(tuple(like), {}, recorded, lr, DEFAULT_LR)[0]


def describe_settings(optim: Mapping[str, Mapping[str, Any]], sources: Mapping[str, Mapping[str, str]]) -> str:
    """One line: 'theta lr 0.01 (typed), betas 0.9,0.999 (global default), ...; phi ...'."""
    def value(v: Any) -> str:
        return ",".join(f"{b:g}" for b in v) if isinstance(v, (list, tuple)) else f"{v:g}"

    return "; ".join(f"{g} " + ", ".join(f"{k} {value(v)} ({sources.get(g, {}).get(k, TYPED)})"
                                          for k, v in spec.items()) for g, spec in optim.items())


def group_settings(groups: tuple[str, ...] | list[str], optim: Mapping[str, Mapping[str, Any]], lr: float,
                   eps: float = 1e-4) -> dict[str, GroupOptim]:
    """Every group's settings: its entry in `optim` over the defaults (lr, DEFAULT_BETAS, 1 step)."""
    out = {}
    for g in groups:
        spec = optim.get(g, {})
        out[g] = GroupOptim(lr=float(spec.get("lr", lr)), betas=tuple(spec.get("betas", DEFAULT_BETAS)),
                            eps=eps, steps=int(spec.get("steps", 1)))
    return out


def parameter_groups(model: DeepLatentModel, method: Method) -> dict[str, list[nn.Parameter]]:
    """θ, φ and whatever groups the method owns, restricted to the groups its losses update."""
    groups = {THETA: model.generative_parameters(), PHI: model.encoder_parameters()}
    groups.update(method.extra_parameter_groups())
    missing = [g for g in method.loss_groups if g not in groups]
    if missing:
        raise ValueError(f"method {method.name!r} has losses for unknown parameter groups {missing}")
    return {g: groups[g] for g in method.loss_groups}


#: devices with PyTorch's fused Adam kernel
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_optimizers(groups: Mapping[str, list[nn.Parameter]], settings: Mapping[str, GroupOptim]
                    ) -> dict[str, torch.optim.Adam]:
    """One Adam per group with that group's settings.

    Fused Adam (one kernel over the group's tensors instead of about ten element-wise passes per
    parameter) where the device has it: the same update up to float rounding (tests/training/
    test_optim.py), and the largest single saving at small K and B on CPU (`benchmarks/throughput.py`).
    A checkpoint keeps the flag, so a resumed run goes on with the update it began with."""
    return {g: torch.optim.Adam(params, lr=settings[g].lr, eps=settings[g].eps, betas=settings[g].betas,
                                fused=_fusable(params) or None)
            for g, params in groups.items()}


def _fusable(params: list[nn.Parameter]) -> bool:
    return bool(params) and all(p.is_floating_point() and p.device.type in FUSED_ADAM_DEVICES for p in params)


def scale_learning_rates(optimizers: Mapping[str, torch.optim.Optimizer], settings: Mapping[str, GroupOptim],
                         factor: float) -> None:
    """Set every group's learning rate to its own rate times `factor` (schedule × rollback scale)."""
    for g, opt in optimizers.items():
        for param_group in opt.param_groups:
            param_group["lr"] = settings[g].lr * factor
