"""Rebuild a trained model from its run folder (config.json + newest good checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepem.data.base import DataSplits
from deepem.data.corruption import CorruptedData
from deepem.errors import InvalidInputError
from deepem.methods.base import Method
from deepem.models.config import make_model
from deepem.models.lvm import DeepLatentModel
from deepem.training.checkpoint_file import load_latest_good
from deepem.training.config import TrainConfig
from deepem.training.run import RunFolder, RunFolderError
from deepem.workflows.assembly import build_method, run_data


@dataclass
class TrainedRun:
    config: TrainConfig
    model: DeepLatentModel
    method: Method
    data: DataSplits
    checkpoint: Path
    step: int  # the step of the parameters loaded: the best validation's under early stopping
    corrupted: CorruptedData | None = None  # the incomplete data of a run trained with --missing


def load_trained_run(run_dir: str | Path, data_dir: str | None = None, device: str = "cpu",
                     warn: Callable[[str], None] = print) -> TrainedRun:
    """The run's model in eval mode on `device`, with the data it was trained on: the newest checkpoint's
    parameters, or for a run with early stopping (config.patience) those of its best validation."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    run = RunFolder(Path(run_dir))
    config = TrainConfig.from_dict(run.read_config())
    if data_dir:
        config.data_dir = data_dir
    # The data as trained on; for a run trained on incomplete data, `data` is the complete copy (on the
    # same scale) and `corrupted` the incomplete one with its masks.
    data, corrupted = run_data(config, recorded=True, run_dir=run_dir)
    if corrupted is not None:
        data = corrupted.complete
    found = load_latest_good(run.checkpoints, map_location="cpu", warn=warn, move_aside=False)
    if found is None:
        raise RunFolderError(f"run {run.root} has no usable checkpoint yet; train it first (or --resume it)")
    path, ckpt = found
    config.device = device
    if config.model.likelihood is None:
        config.model.likelihood = data.likelihood
    model = make_model(config.model, data.data_dim)
    # A run trained with early stopping (--patience) is evaluated with its best validation's parameters.
    params = ckpt.get("best", ckpt)
    model.load_state_dict(params["model"])
    method = build_method(config)
    method.bind(model)  # the method's own networks exist once bound, before its state is loaded
    method.load_state_dict(params["method"])
    model.to(device, config.torch_dtype).eval()
    method.to(device, config.torch_dtype)
    return TrainedRun(config, model, method, data, path, parameters_step(run, ckpt), corrupted)


def parameters_step(run: RunFolder, ckpt: dict[str, Any]) -> int:
    """The step whose parameters `ckpt` hands to evaluation: its best validation's (early stopping) or its
    own. A checkpoint written before the best copy recorded its step: the step of the validation record
    of the best epoch in metrics.jsonl."""
    newest = int(ckpt["train_state"]["step"])
    if "best" not in ckpt:
        return newest
    if "step" in ckpt["best"]:
        return int(ckpt["best"]["step"])
    best_epoch = ckpt["train_state"].get("best_epoch")
    steps = [r["step"] for r in run.read_metrics() if r.get("kind") == "valid" and r.get("epoch") == best_epoch]
    return int(steps[-1]) if steps else newest


def used_step(run_dir: str | Path) -> int | None:
    """The step of the parameters `load_trained_run` would evaluate (None: no usable checkpoint)."""
    run = RunFolder(Path(run_dir))
    found = load_latest_good(run.checkpoints, map_location="cpu", warn=_quiet, move_aside=False)
    return None if found is None else parameters_step(run, found[1])


def _quiet(message: str) -> None:
    """Warnings are for the command that loads the run; a look at its step says nothing."""


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
