"""The `deepem train` command's logic (and `deepem compare`'s, for each method): start or resume a
run, train it under a lock with graceful Ctrl-C / SIGTERM handling, and say where it stands. The CLI
only parses arguments and calls `run_training`, whose return value is the process exit code."""

from __future__ import annotations

import errno
import shlex
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepem.data.base import DataSplits
from deepem.errors import UserError
from deepem.training.config import TrainConfig
from deepem.training.distributed import Parallel, finish, launched, seed_rank_stream
from deepem.training.optim import describe_settings
from deepem.training.run import RunFolder
from deepem.training.signals import StopRequest, graceful_stop
from deepem.training.state import TrainingInterrupted, resume_command
from deepem.workflows.assembly import build_trainer, file_dataset, is_file_dataset
from deepem.workflows.own_data import load_dataset_record, save_dataset_record

EXIT_OK = 0
EXIT_ABORTED = 130  # a second Ctrl-C: stopped without a new checkpoint (the shell's SIGINT code)
#: write errors the user can fix (disk full, quota, read-only, permission); others are bugs and propagate
WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


@dataclass
class TrainOutcome:
    """How a `train_run` ended: the process exit code, and the trainer's summary when it finished."""

    exit_code: int
    summary: dict[str, Any] | None = None


def run_training(config: TrainConfig | None, out: str | Path, resume: bool = False, force: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print,
                 overrides: dict[str, Any] | None = None, data: DataSplits | None = None,
                 batch_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
                 handle_signals: bool = True) -> int:
    """`train_run`'s exit code (the `deepem train` command)."""
    return train_run(config, out, resume, force, progress, log, overrides, data, batch_hook,
                     handle_signals).exit_code


def train_run(config: TrainConfig | None, out: str | Path, resume: bool = False, force: bool = False,
              progress: bool = True, log: Callable[[str], None] = print,
              overrides: dict[str, Any] | None = None, data: DataSplits | None = None,
              batch_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
              handle_signals: bool = True) -> TrainOutcome:
    """Train `config` into the new run folder `out`, or with resume=True continue the run in `out`
    from its own config.json and newest good checkpoint. Returns the process exit code: 0 when the
    run finished; 128 + signal number (130 for Ctrl-C, 143 for SIGTERM) when a signal stopped it,
    after the step in progress, with a checkpoint written and the resume command logged.

    resume=True with a `config`: continue the run in `out` if that config matches it (fields in
    RESUME_OVERRIDABLE may differ); `deepem compare` re-runs its method runs this way.
    overrides: fields a resumed run may change (`config.RESUME_OVERRIDABLE`: epochs, nan_policy, ...).
    data, batch_hook: for tests and library use (data given directly instead of by dataset name).
    Errors with a message for the user (ConfigError, DataError, RunFolderError, CheckpointError,
    NonFiniteError, DatasetNotFoundError) propagate; `USER_ERRORS` lists them."""
    out = Path(out)
    run = RunFolder(out)
    if resume and config is None:
        run.require_run()
        config = TrainConfig.from_dict(run.read_config()).with_overrides(overrides or {})
        require_training_file(out, config)
    elif resume:
        run.require_run()
        config = config.with_overrides(overrides or {})
        require_training_file(out, config)
    elif config is None:
        raise ValueError("run_training needs a configuration unless resume=True")
    elif overrides:
        config = config.with_overrides(overrides)

    # Data parallel (torchrun or --nproc): this process is one rank; rank 0 alone logs and writes.
    parallel = Parallel.from_env(config.device) if launched() else None
    try:
        return _train(config, out, run, resume, force, progress, log, data, batch_hook, handle_signals, parallel)
    finally:
        finish(parallel)


def require_training_file(out: Path, config: TrainConfig) -> None:
    """A resumed run reads its training file again: when it is gone, say where it must be (and with which
    sha256); a resumed run cannot be pointed at another file."""
    if not is_file_dataset(config.dataset) or Path(config.dataset).expanduser().is_file():
        return
    try:
        sha256 = f" (sha256 {load_dataset_record(out)['sha256']})"
    except (OSError, ValueError, KeyError):
        sha256 = ""
    raise UserError(f"the run's training file {config.dataset} is gone; put that file back at that path, the same "
                    f"bytes{sha256}, to resume: a resumed run cannot change its dataset (train a new run on another "
                    "file with `deepem train --dataset FILE`)")


def _train(config: TrainConfig, out: Path, run: RunFolder, resume: bool, force: bool, progress: bool,
           log: Callable[[str], None], data: DataSplits | None,
           batch_hook: Callable[[int, torch.Tensor], torch.Tensor] | None, handle_signals: bool,
           parallel: Parallel | None) -> TrainOutcome:
    writer = parallel is None or parallel.is_writer
    if not writer:
        log, progress = _silent, False
    stop = StopRequest()
    # Validation and data loading happen here, before anything is written to `out`.
    trainer = build_trainer(config, out, data=data, log=log, progress=progress, batch_hook=batch_hook,
                            stop=stop, recorded=resume, parallel=parallel)
    # Each rank draws its particles from its own stream from here on (after the identical model set-up).
    seed_rank_stream(config.seed, parallel)
    if not resume:
        trainer.start(force=force)
        if writer and is_file_dataset(trainer.config.dataset):  # the file's path, sha256, split and scale
            save_dataset_record(out, file_dataset(trainer.config))
        log(f"optimiser settings in effect: {describe_settings(trainer.config.optim, trainer.config.optim_sources)}")
    if config.valid_every and trainer.validate is None:  # said once the run is accepted, not before a refusal
        log("note: no validation bound during training: this model's q(z|x) has no density, so the IW bound "
            f"cannot be computed; evaluate the run with `{evaluate_command(out, config)}`")
    with (run.lock() if writer else nullcontext()), (graceful_stop(stop) if handle_signals else nullcontext()):
        if resume:
            if trainer.resume() and trainer.state.epoch >= config.epochs:
                log(f"run {out} is already complete ({trainer.state.epoch} epochs); to train longer, "
                    f"resume with a larger --epochs")
        try:
            summary = trainer.fit()
        except TrainingInterrupted as stopped:
            log(str(stopped))
            return TrainOutcome(stop.exit_code or EXIT_ABORTED)
        except OSError as err:
            if err.errno not in WRITE_FAILURES:
                raise
            # Checkpoints are written atomically: a failed write leaves the previous one whole.
            raise UserError(
                f"could not write to the run folder {out} ({err.strerror}: {err.filename or 'a run file'}); "
                f"the run's last checkpoint is intact. Free disk space (or make the folder writable), then "
                f"resume with: {resume_command(out)}") from err
        except KeyboardInterrupt:
            # A second Ctrl-C: stop at once. Checkpoint writes are atomic, so the newest complete
            # checkpoint is intact and the run resumes from it.
            log(f"aborted without a new checkpoint; the run resumes from its last checkpoint with:\n"
                f"  {resume_command(out)}")
            return TrainOutcome(EXIT_ABORTED)
    log(f"trained {summary['epochs']} epochs ({summary['steps']} steps) in {summary['seconds']:.1f} s"
        + (f"; {summary['skipped_steps']} non-finite steps skipped" if summary["skipped_steps"] else "")
        + (f"; {summary['rollbacks']} rollbacks, learning-rate scale {summary['lr_scale']:g}"
           if summary["rollbacks"] else "")
        + (f"; stopped early: no better validation bound in {config.patience} validations, best at epoch "
           f"{summary['best_epoch']}, step {summary['best_step']} (its parameters are what evaluation uses)"
           if summary["stopped_early"] else "")
        + f"; run folder {out}; evaluate with: {evaluate_command(out, config)}")
    return TrainOutcome(EXIT_OK, summary)


def evaluate_command(out: Path, config: TrainConfig) -> str:
    """The evaluation command that works for the run: an implicit q has no density for the IW estimate,
    and AIS from the encoder needs one, so such a run is evaluated by AIS from the prior; a run on a file
    of the user's has no complete copy of its missing cells, so only log p(x_o) can be estimated."""
    if config.model.encoder == "implicit":
        return f"deepem evaluate {shlex.quote(str(out))} --estimator ais --ais-initial prior"
    if is_file_dataset(config.dataset):
        return f"deepem evaluate {shlex.quote(str(out))} --observed"
    return f"deepem evaluate {shlex.quote(str(out))}"


def _silent(message: str) -> None:
    """The log of ranks > 0: rank 0 says everything once."""
