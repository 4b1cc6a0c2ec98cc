"""Training: the Trainer (one run), the one loop and its steppers, per-group optimisers, configuration, run folders and
checkpoints. Building a Trainer from a TrainConfig (registries, datasets) is workflows/assembly.py."""

from deepem.files import ChecksumError
from deepem.training.checkpoint_file import CheckpointError, load_checkpoint, load_latest_good, save_checkpoint
from deepem.training.config import NAN_POLICIES, RESUME_OVERRIDABLE, ConfigError, TrainConfig
from deepem.training.datacheck import DataError
from deepem.training.guards import NonFiniteError
from deepem.training.optim import GroupOptim
from deepem.training.run import RunFolder, RunFolderError
from deepem.training.signals import StopRequest, graceful_stop
from deepem.training.state import TrainingInterrupted, TrainState, resume_command
from deepem.training.step import StepResult, TrainStep
from deepem.training.trainer import Trainer

__all__ = [
    "NAN_POLICIES", "RESUME_OVERRIDABLE", "CheckpointError", "ChecksumError", "ConfigError", "DataError",
    "GroupOptim", "NonFiniteError", "RunFolder", "RunFolderError", "StepResult", "StopRequest", "TrainConfig",
    "TrainState", "TrainStep", "Trainer", "TrainingInterrupted", "graceful_stop", "load_checkpoint",
    "load_latest_good", "resume_command", "save_checkpoint",
]
