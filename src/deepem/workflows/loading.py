"""Rebuild a trained model from its run folder (config.json + newest good checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    step: int
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
    return TrainedRun(config, model, method, data, path, int(ckpt["train_state"]["step"]), corrupted)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
