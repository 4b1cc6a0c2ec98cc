"""Applications of the library, above training and evaluation: build a run from a TrainConfig
(assembly), train or resume it under a lock with signal handling (train), load and evaluate a trained
run, and compare methods. The CLI calls these."""

from deepem.errors import UserError
from deepem.workflows.assembly import assemble, build_trainer, iw_validator, resolve
from deepem.workflows.compare import compare
from deepem.workflows.evaluate import evaluate_run
from deepem.workflows.loading import TrainedRun, load_trained_run
from deepem.workflows.train import TrainOutcome, run_training, train_run

#: errors whose message is meant for the user: the CLI prints them without a traceback. Every one derives
#: from UserError (ConfigError, DataError, RunFolderError, CheckpointError, ChecksumError, ...).
USER_ERRORS = (UserError,)

__all__ = [
    "USER_ERRORS", "TrainOutcome", "TrainedRun", "assemble", "build_trainer", "compare", "evaluate_run",
    "iw_validator", "load_trained_run", "resolve", "run_training", "train_run",
]
