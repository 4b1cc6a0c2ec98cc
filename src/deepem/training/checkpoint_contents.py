"""What a training checkpoint holds and how it is put back: parameters, the method's own state
(annealing counters are buffers), optimiser states, the loss scaler's state (`16-mixed` only: its scale
and growth counter, so a resumed run goes on with the scale it had), the TrainState (epoch, batch,
rollback scale, the metrics window not yet logged) and every RNG state. The file format itself (checksummed,
weights_only) is checkpoint_file.py's."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepem.training.checkpoint_file import CheckpointError, checkpoint_name, prune_checkpoints, save_checkpoint
from deepem.training.config import RESUME_OVERRIDABLE, ConfigError, TrainConfig
from deepem.training.guards import NonFiniteError, first_non_finite_tensor
from deepem.training.metrics import window_floats
from deepem.training.optim import in_effect
from deepem.training.rng import capture_rng_state, restore_rng_state
from deepem.training.run import RunFolder
from deepem.training.state import TrainState, resume_command

CHECKPOINT_FORMAT = 2
REQUIRED_KEYS = ("model", "method", "optimizers", "train_state", "rng")


def training_state(model: nn.Module, method: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer],
                   state: TrainState, config: dict[str, Any], scaler: torch.amp.GradScaler | None = None
                   ) -> dict[str, Any]:
    """The dictionary a checkpoint stores (with a "scaler" entry when the step scales its losses)."""
    train_state = dataclasses.asdict(state)
    train_state["window"] = window_floats(state.window)
    extra = {} if scaler is None else {"scaler": scaler.state_dict()}  # plain numbers (scale, growth tracker)
    return {**extra,
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "method": method.state_dict(),
        "optimizers": {g: opt.state_dict() for g, opt in optimizers.items()},
        "train_state": train_state,
        "rng": capture_rng_state(),
        "config": config,
    }


def check_fits(ckpt: dict[str, Any], model: nn.Module, optimizers: Mapping[str, Any]) -> None:
    """Refuse (CheckpointError) a verified file that does not fit this run: missing entries or
    parameters of other shapes."""
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint lacks {', '.join(missing)}; it was not written by this trainer")
    mine = model.state_dict()
    theirs = ckpt["model"]
    if set(mine) != set(theirs) or any(tuple(mine[k].shape) != tuple(theirs[k].shape) for k in mine):
        raise CheckpointError("checkpoint parameters do not match this model's (different architecture)")
    if set(ckpt["optimizers"]) != set(optimizers):
        raise CheckpointError(f"checkpoint has optimisers for {sorted(ckpt['optimizers'])}, this method "
                              f"needs {sorted(optimizers)}")


def restore(ckpt: dict[str, Any], model: nn.Module, method: nn.Module,
            optimizers: Mapping[str, torch.optim.Optimizer], scaler: torch.amp.GradScaler | None = None
            ) -> TrainState:
    """Load a checkpoint into the objects (and the global RNGs); return its TrainState. A scaler goes on
    from the checkpoint's scale when it has one (a checkpoint written before scalers were saved has
    none: the scaler then starts from its initial scale)."""
    check_fits(ckpt, model, optimizers)
    try:
        model.load_state_dict(ckpt["model"])
        method.load_state_dict(ckpt["method"])
        for g, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][g])
        if scaler is not None and "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint does not fit this run: {err}") from err
    known = {f.name for f in dataclasses.fields(TrainState)}
    state = TrainState(**{k: v for k, v in ckpt["train_state"].items() if k in known})
    restore_rng_state(ckpt["rng"])
    return state


def write(run: RunFolder, state: dict[str, Any], step: int, keep: int, where: str) -> Path:
    """Write a checkpoint of `state`, unless some of it is not finite: then raise NonFiniteError and
    leave the good checkpoints as they are."""
    check_finite(state, run, where)
    path = run.checkpoints / checkpoint_name(step)
    save_checkpoint(path, state)
    prune_checkpoints(run.checkpoints, keep)
    return path


def check_finite(state: dict[str, Any], run: RunFolder, where: str) -> None:
    """NonFiniteError if some parameter, method state or optimiser state is not finite."""
    bad = first_non_finite_tensor({k: state[k] for k in ("model", "method", "optimizers")})
    if bad:
        raise NonFiniteError(f"refusing to write a checkpoint: {bad} is not finite at {where}; the last good "
                             f"checkpoint in {run.checkpoints} is kept")


def check_same_run(run: RunFolder, config: TrainConfig) -> None:
    """A resumed run must compute what the run computed: only RESUME_OVERRIDABLE fields may differ."""
    saved = TrainConfig.from_dict(run.read_config()).to_dict()
    mine = config.to_dict()
    # optim: compared by effect (a config.json of an older deepem names only some of the settings in effect)
    differ = [k for k in mine if k not in (*RESUME_OVERRIDABLE, "optim", "optim_sources") and saved.get(k) != mine[k]]
    if in_effect(saved["optim"], saved["lr"], mine["optim"]) != mine["optim"]:
        differ.append("optim")
    if differ:
        detail = "; ".join(f"{k}: run has {saved.get(k)!r}, given {mine[k]!r}" for k in differ)
        raise ConfigError(f"this configuration does not match the run in {run.root} ({detail}); "
                          f"resume with the run's own configuration ({resume_command(run.root)})")
