"""Applications of the library, above training and evaluation: build a run from a TrainConfig
(assembly), train or resume it under a lock with signal handling (train), load and evaluate a trained
run, and compare methods. The CLI calls these."""

from deepem.data.paths import DatasetNotFoundError
from deepem.files import ChecksumError
from deepem.training.checkpoint_file import CheckpointError
from deepem.training.config import ConfigError
from deepem.training.datacheck import DataError
from deepem.training.guards import NonFiniteError
from deepem.training.run import RunFolderError
from deepem.workflows.assembly import assemble, build_trainer, iw_validator, resolve
from deepem.workflows.compare import compare
from deepem.workflows.evaluate import evaluate_run
from deepem.workflows.loading import TrainedRun, load_trained_run
from deepem.workflows.train import TrainOutcome, run_training, train_run

#: errors whose message is meant for the user: the CLI prints them without a traceback.
USER_ERRORS = (ConfigError, DataError, RunFolderError, CheckpointError, ChecksumError, NonFiniteError,
               DatasetNotFoundError)

__all__ = [
    "USER_ERRORS", "TrainOutcome", "TrainedRun", "assemble", "build_trainer", "compare", "evaluate_run",
    "iw_validator", "load_trained_run", "resolve", "run_training", "train_run",
]
