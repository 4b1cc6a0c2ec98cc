"""Training: the loop (`Trainer`), its configuration, run folders, checkpoints, and the `deepem train`
command's logic (`run_training`)."""

from deepem.data.paths import DatasetNotFoundError
from deepem.training.checkpoint import CheckpointError, load_checkpoint, load_latest_good, save_checkpoint
from deepem.training.config import NAN_POLICIES, RESUME_OVERRIDABLE, ConfigError, TrainConfig
from deepem.training.datacheck import DataError
from deepem.training.files import ChecksumError
from deepem.training.guards import NonFiniteError
from deepem.training.run import RunFolder, RunFolderError
from deepem.training.session import run_training
from deepem.training.signals import StopRequest, graceful_stop
from deepem.training.trainer import Trainer, TrainingInterrupted, TrainState, build_model, resume_command

#: errors whose message is meant for the user: the CLI prints them without a traceback.
USER_ERRORS = (ConfigError, DataError, RunFolderError, CheckpointError, ChecksumError, NonFiniteError,
               DatasetNotFoundError)

__all__ = [
    "NAN_POLICIES", "RESUME_OVERRIDABLE", "USER_ERRORS", "CheckpointError", "ChecksumError", "ConfigError",
    "DataError", "DatasetNotFoundError", "NonFiniteError", "RunFolder", "RunFolderError", "StopRequest",
    "TrainConfig", "TrainState", "Trainer", "TrainingInterrupted", "build_model", "graceful_stop",
    "load_checkpoint", "load_latest_good", "resume_command", "run_training", "save_checkpoint",
]
