"""Applications of the library, above training and evaluation: build a run from a TrainConfig
(assembly), train or resume it under a lock with signal handling (train), load a trained model that stands
on its own (trained_model: `load_model`, what `deepem.load` is), load and evaluate a trained run, and
compare methods. The CLI calls these."""

from deepem.errors import UserError
from deepem.workflows.assembly import assemble, build_trainer, iw_validator, resolve, run_config
from deepem.workflows.compare import compare
from deepem.workflows.evaluate import evaluate_run
from deepem.workflows.loading import TrainedRun, load_trained_run
from deepem.workflows.train import TrainOutcome, run_training, train_run
from deepem.workflows.trained_model import DataTransform, TrainedModel, load_model

#: errors whose message is meant for the user: the CLI prints them without a traceback. Every one derives
#: from UserError (ConfigError, DataError, RunFolderError, CheckpointError, ChecksumError, ...).
USER_ERRORS = (UserError,)

__all__ = [
    "USER_ERRORS", "DataTransform", "TrainOutcome", "TrainedModel", "TrainedRun", "assemble", "build_trainer",
    "compare", "evaluate_run", "iw_validator", "load_model", "load_trained_run", "resolve", "run_config",
    "run_training", "train_run",
]
