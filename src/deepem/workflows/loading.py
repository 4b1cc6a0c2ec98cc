"""Rebuild a trained run from its run folder (config.json + newest good checkpoint) with the data it was
trained on, for what needs the run's own splits (evaluating them, comparing runs). What needs the model
alone loads a TrainedModel (workflows/trained_model.py), which reads no training data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from deepem.data.base import DataSplits
from deepem.data.corruption import CorruptedData
from deepem.data.own_dataset import FileChangedError
from deepem.errors import InvalidInputError, UserError
from deepem.methods.base import Method
from deepem.models.config import make_model
from deepem.models.lvm import DeepLatentModel
from deepem.training.checkpoint_file import load_latest_good
from deepem.training.config import TrainConfig
from deepem.training.run import RunFolder, RunFolderError
from deepem.workflows.assembly import build_method, is_file_dataset, run_data
from deepem.workflows.own_data import RECORD_NAME, load_dataset_record
from deepem.workflows.trained_model import parameters_step


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
    data, corrupted = run_split_data(config, run_dir)
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


class RunDataError(UserError, FileNotFoundError):
    """The file a run trained on is gone or changed, and the command needs the run's own splits."""


def run_split_data(config: TrainConfig, run_dir: str | Path) -> tuple[DataSplits, CorruptedData | None]:
    """`run_data` of a run folder; a file of one's own that is gone or changed is one line saying what to do."""
    try:
        return run_data(config, recorded=True, run_dir=run_dir)
    except (FileNotFoundError, FileChangedError) as err:
        if not is_file_dataset(config.dataset):
            raise
        record = Path(run_dir) / RECORD_NAME
        path = load_dataset_record(run_dir)["path"] if record.is_file() else config.dataset
        what = "has changed since the run recorded it" if isinstance(err, FileChangedError) else "is not there"
        raise RunDataError(f"run {run_dir} was trained on {path}, which {what}: restore that file to use the "
                           "run's own splits, or give rows of your own with --input FILE") from err


def used_step(run_dir: str | Path) -> int | None:
    """The step of the parameters `load_trained_run` would evaluate (None: no usable checkpoint)."""
    run = RunFolder(Path(run_dir))
    found = load_latest_good(run.checkpoints, map_location="cpu", warn=_quiet, move_aside=False)
    return None if found is None else parameters_step(run, found[1])


def _quiet(message: str) -> None:
    """Warnings are for the command that loads the run; a look at its step says nothing."""


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
