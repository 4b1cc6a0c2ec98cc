"""The training loop. It owns the step (one optimiser per parameter group), the schedule, the data
order, checkpoints and metrics, and knows nothing about what a method computes or how a model is
validated (the validator is injected).

Exact resume. Everything that decides the future of a run is in its checkpoint (checkpointing.py);
the data order of an epoch needs no state (data_order.py); validation draws from a generator of its
own. metrics.jsonl is cut back on resume to the records written before the checkpoint. On CPU an
interrupted and resumed run therefore ends bitwise equal to the uninterrupted one.

Non-finite values. The step (step.py) applies nothing unless the batch, every loss, the log-weights
and every gradient are finite; a bad step is handled by `nan_policy` (nonfinite.py: stop with a
diagnosis, skip the step, or roll back to the last good checkpoint with half the learning rate, a
bounded number of times), and a checkpoint whose state is not finite is never written."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from deepem.inference.numerics import flush_denormals
from deepem.methods.base import Method, MethodOutput
from deepem.models.lvm import DeepLatentModel
from deepem.training import checkpointing, nonfinite
from deepem.training.checkpoint import checkpoint_name, load_latest_good
from deepem.training.config import DEFAULT_LR, ConfigError, TrainConfig
from deepem.training.data_order import batch_indices, batches_per_epoch, epoch_data
from deepem.training.datacheck import DataError, check_split, check_values
from deepem.training.distributed import (
    Parallel,
    check_shardable,
    check_world_size,
    distributed_state,
    restore_rank_rng,
    shard_batch,
)
from deepem.training.guards import NonFiniteError
from deepem.training.metrics import LOG_EVERY_STEPS, add_step, window_record
from deepem.training.optim import group_settings, parameter_groups, scale_learning_rates, settings_in_effect
from deepem.training.run import RunFolder
from deepem.training.schedules import learning_rate_factor
from deepem.training.signals import StopRequest
from deepem.training.state import TrainingInterrupted, TrainState, resume_command
from deepem.training.step import TrainStep
from deepem.training.validation import Validator, validation_due


class Trainer:
    """Train `model` with `method` on the rows of `train_data` into the run folder `run_dir`.

    settings: the loop's settings (epochs, batch_size, lr, optim, schedule, seed, checkpoints,
        nan_policy, device, dtype, ...); config.json records them. Default: TrainConfig() with the
        method's name and K. The data and model fields (dataset, model, train_limit, ...) are recorded
        only: whoever builds the model and data applies them (workflows/assembly.py for the CLI).
    validate: called with the model after every `valid_every`-th epoch; None: no validation.
    train_mask: observed-data mask shaped like train_data (True = observed); None = fully observed.
    dynamic_binarization: draw binary pixels from grey levels afresh each epoch.
    batch_hook, stop: for tests (poison or kill at a step) and signal handling (workflows/train.py).
    parallel: this process's rank in a data-parallel job (training/distributed.py); None: one process.

    The method is bound to the model (`method.bind`) before optimisers are built or a checkpoint is
    loaded. Seed the RNGs before building the model for a reproducible run."""

    def __init__(self, model: DeepLatentModel, method: Method, train_data: Tensor, run_dir: str | Path,
                 settings: TrainConfig | None = None, *, validate: Validator | None = None,
                 train_mask: Tensor | None = None, dynamic_binarization: bool = False,
                 log: Callable[[str], None] = print, progress: bool = True,
                 batch_hook: Callable[[int, Tensor], Tensor] | None = None,
                 stop: StopRequest | None = None, parallel: Parallel | None = None) -> None:
        k = getattr(method, "particles", None)
        settings = settings if settings is not None else TrainConfig(dataset="custom")
        # The run records the method it really trains, whatever the settings' defaults said.
        options = {**settings.method_options, **({"particles": k} if isinstance(k, int) else {})}
        self.config = dataclasses.replace(settings, method=method.name or type(method).__name__,
                                          method_options=options)
        self.config.validate()  # device and dtype are used at once; group names once the groups exist
        self.model = model.to(self.config.device, self.config.torch_dtype)
        method.bind(model)  # before optimisers and checkpoints: the method may build networks here
        self.method = method.to(self.config.device, self.config.torch_dtype)
        groups = tuple(parameter_groups(model, method))
        # The method's paper settings (e.g. AVB's rates) apply where the user set nothing; config.json
        # records the settings in effect, so a resumed run rebuilds exactly these optimisers.
        self.config.optim, self.config.optim_sources = settings_in_effect(
            groups, getattr(method, "default_optim", {}), self.config.optim, self.config.lr, DEFAULT_LR,
            self.config.optim_sources)
        self.config.validate(groups=groups)
        # Missing entries may hold anything (NaN included): only observed values are checked.
        check_split("train", train_data if train_mask is None else torch.where(train_mask, train_data, 0.0))
        if train_data.shape[0] == 0:
            raise DataError("train split is empty; a dataset needs at least one training point")
        if not dynamic_binarization:
            check_values("train", train_data, model.likelihood.check_data, train_mask)
        self.train_data, self.train_mask = train_data, train_mask
        self.dynamic_binarization = dynamic_binarization
        self.validate = validate
        if self.config.patience and validate is None:
            raise ConfigError(f"patience = {self.config.patience} needs a validation bound, and this run has none "
                              "(no validator, or a q(z|x) without a density); set patience = 0")
        self.run = RunFolder(Path(run_dir))
        self.log = log
        self.progress = progress
        self.batch_hook = batch_hook
        self.stop = stop if stop is not None else StopRequest()
        self.step = TrainStep(model, method, group_settings(groups, self.config.optim, self.config.lr,
                                                            self.config.adam_eps))
        self.state = TrainState()
        # data parallel: gradients averaged in the step; only rank 0 writes the run folder
        self.parallel = parallel
        if parallel is not None:
            check_shardable(train_data.shape[0], self.config.batch_size, parallel.world)
            self.step.grad_sync = parallel.grad_sync
        self._saved_at: tuple[int, int] | None = None  # (epoch, step) of the newest checkpoint written
        # early stopping: copies of the model's and method's states at the best validation (checkpointed)
        self._best: dict[str, Any] | None = None

    @property
    def optimizers(self) -> dict[str, torch.optim.Adam]:
        return self.step.optimizers

    @property
    def batches_per_epoch(self) -> int:
        return batches_per_epoch(self.train_data.shape[0], self.config.batch_size)

    # set-up ------------------------------------------------------------------------------------
    def start(self, force: bool = False) -> None:
        """A new run: create the folder, save the configuration and a step-0 checkpoint (so that the
        rollback policy and --resume always have a state to return to)."""
        if self._writes:
            self.run.create(force=force)
            self.run.write_config(self.config.to_dict())
        self.save()

    def resume(self) -> bool:
        """Restore the newest checkpoint that verifies; False if the run has none (it then starts
        again from step 0, which the seed makes identical to its first start)."""
        self.run.require_run()
        checkpointing.check_same_run(self.run, self.config)
        if self._writes and self.run.read_config() != self.config.to_dict():
            # Only fields a resumed run may change differ (epochs, checkpointing, ...): record them, so that
            # config.json says how far the run now goes.
            self.run.write_config(self.config.to_dict())
        found = load_latest_good(self.run.checkpoints, map_location="cpu", warn=self.log,
                                 validate=self._check_fits)
        if found is None:
            self.log(f"warning: no usable checkpoint in {self.run.checkpoints}: starting the run again "
                     "from step 0")
            self._truncate_metrics(0)
            self.save()
            return False
        path, ckpt = found
        self.load_state(ckpt)
        if "metrics_records" in ckpt["train_state"]:  # (absent from checkpoints of format 1)
            self._truncate_metrics(self.state.metrics_records)
        self.log(f"resumed from {path.name}: epoch {self.state.epoch}, batch {self.state.batch}, "
                 f"step {self.state.step}")
        return True

    # checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = checkpointing.training_state(self.model, self.method, self.optimizers, self.state,
                                             self.config.to_dict())
        if self.parallel is not None:
            state.update(distributed_state(self.parallel))
        if self._best is not None:  # early stopping: what evaluation loads (workflows/loading.py)
            state["best"] = self._best
        return state

    def _check_fits(self, ckpt: dict[str, Any]) -> None:
        checkpointing.check_fits(ckpt, self.model, self.optimizers)

    def load_state(self, ckpt: dict[str, Any]) -> None:
        check_world_size(ckpt, self.parallel, self.run.root)
        self.state = checkpointing.restore(ckpt, self.model, self.method, self.optimizers)
        if self.parallel is not None:
            restore_rank_rng(ckpt, self.parallel)
        self._best = ckpt.get("best")
        self._saved_at = (self.state.epoch, self.state.step)

    def save(self) -> Path:
        """Write a checkpoint of the current state (NonFiniteError, and nothing written, if some of it
        is not finite)."""
        state = self.state_dict()
        if not self._writes:  # another rank writes; this one refuses a non-finite state as the writer does
            checkpointing.check_finite(state, self.run, self._where())
            self._saved_at = (self.state.epoch, self.state.step)
            return self.run.checkpoints / checkpoint_name(self.state.step)
        path = checkpointing.write(self.run, state, self.state.step, self.config.keep_checkpoints,
                                   self._where())
        self._saved_at = (self.state.epoch, self.state.step)
        return path

    def _checkpoint(self, started: float) -> None:
        """Save during training; under the rollback policy a non-finite state is rolled back instead."""
        self.state.elapsed = time.perf_counter() - started
        try:
            self.save()
        except NonFiniteError as err:
            if self.config.nan_policy != "rollback":
                raise
            self._roll_back(str(err))

    # non-finite steps --------------------------------------------------------------------------
    def _where(self) -> str:
        s = self.state
        return (f"method {self.config.method!r}, epoch {s.epoch}, batch {s.batch} of {self.batches_per_epoch}"
                f" (step {s.step})")

    def train_step(self, x: Tensor, mask: Tensor | None = None) -> MethodOutput | None:
        """One guarded step (step.py); a non-finite one is handled by the policy. None when skipped."""
        result = self.step(x, mask)
        if result.problem:
            return self._handle_non_finite(result.problem)
        self.state.consecutive_skips = 0
        return result.output

    def _handle_non_finite(self, what: str) -> None:
        where = self._where()
        if self.config.nan_policy == "skip":
            self._append_metrics(nonfinite.skip(self.state, self.config, what, where))
            self.log(f"warning: non-finite {what} at {where}; step skipped ({self.state.skipped_steps} so far)")
            return None
        if self.config.nan_policy == "rollback":
            self._roll_back(f"non-finite {what} at {where}")
        raise nonfinite.stop(what, where, self.run.root)

    def _roll_back(self, diagnosis: str) -> None:
        """Restore the newest good checkpoint with half the learning rate, then restart the loop
        from it (raises _RolledBack); NonFiniteError once max_rollbacks is used up."""
        nonfinite.check_rollback_budget(self.state, self.config, diagnosis)
        found = load_latest_good(self.run.checkpoints, warn=self.log, validate=self._check_fits)
        if found is None:
            raise NonFiniteError(f"{diagnosis}; no usable checkpoint to roll back to")
        before = self.state
        self.load_state(found[1])
        nonfinite.carry_over(self.state, before)
        self._saved_at = None  # the state now differs from the checkpoint's (lr scale, rollbacks)
        self._truncate_metrics(self.state.metrics_records)
        self._append_metrics({"kind": "nonfinite", "action": "rollback", "what": diagnosis,
                              "step": self.state.step, "epoch": self.state.epoch, "lr_scale": self.state.lr_scale})
        self._set_learning_rates(self.state.epoch)
        self.log(f"warning: {diagnosis}; rolled back to {found[0].name} (rollback {self.state.rollbacks} of at "
                 f"most {self.config.max_rollbacks}), learning-rate scale now {self.state.lr_scale:g}")
        raise _RolledBack

    # the loop ----------------------------------------------------------------------------------
    def _append_metrics(self, record: dict[str, Any]) -> None:
        if self._writes:
            self.run.append_metrics(record)
        self.state.metrics_records += 1

    @property
    def _writes(self) -> bool:
        """Whether this process writes the run folder (always, but for ranks > 0 of a parallel job)."""
        return self.parallel is None or self.parallel.is_writer

    def _truncate_metrics(self, records: int) -> None:
        if self._writes:
            self.run.truncate_metrics(records)

    def _stop_requested(self) -> bool:
        # Every rank must stop at the same step (a checkpoint is a collective): agree on it.
        if self.parallel is None:
            return self.stop.requested
        return bool(self.parallel.any_rank("stop" if self.stop.requested else ""))

    def _set_learning_rates(self, epoch: int) -> None:
        factor = learning_rate_factor(self.config.schedule, epoch) * self.state.lr_scale
        scale_learning_rates(self.optimizers, self.step.settings, factor)

    def fit(self) -> dict[str, Any]:
        """Train to the configured number of epochs from wherever the run stands.

        Raises TrainingInterrupted (after writing a checkpoint) when `self.stop` is set, and
        NonFiniteError when the non-finite policy gives up."""
        while True:
            try:
                with flush_denormals():
                    return self._fit()
            except _RolledBack:
                continue

    def _fit(self) -> dict[str, Any]:
        cfg, s = self.config, self.state
        bpe = self.batches_per_epoch
        started = time.perf_counter() - s.elapsed
        bar = tqdm(total=cfg.epochs * bpe, initial=min(s.step, cfg.epochs * bpe),
                   disable=None if self.progress else True,  # None: on a terminal only, never into log files
                   unit="step", dynamic_ncols=True, mininterval=1.0)
        window_start = time.perf_counter()
        try:
            while s.epoch < cfg.epochs and not self._patience_spent():
                self._set_learning_rates(s.epoch)
                order, data = epoch_data(self.train_data, cfg.seed, s.epoch, self.dynamic_binarization,
                                         self.train_mask)
                while s.batch < bpe:
                    if self._stop_requested():
                        self._interrupt(started)
                    idx = batch_indices(order, s.batch, cfg.batch_size)
                    x = data[idx].to(cfg.device, cfg.torch_dtype)
                    mask = None if self.train_mask is None else self.train_mask[idx].to(cfg.device)
                    if self.batch_hook is not None:
                        x = self.batch_hook(s.step, x)
                    points = x.shape[0]
                    if self.parallel is not None:  # this rank's shard of the global batch
                        x, mask = shard_batch(self.parallel, x, mask)
                    out = self.train_step(x, mask)
                    if self.parallel is not None:
                        self.parallel.average_buffers(self.method)
                    s.batch += 1
                    s.step += 1
                    bar.update(1)
                    s.window_points += points
                    if out is not None:
                        add_step(s, out)
                    if s.step % LOG_EVERY_STEPS == 0 or s.batch == bpe:
                        rate = s.window_points / max(time.perf_counter() - window_start, 1e-9)
                        record = window_record(s, rate)
                        self._append_metrics(record)
                        bar.set_postfix(epoch=s.epoch, loss=f"{record.get('loss_theta', float('nan')):.2f}",
                                        pts_s=f"{rate:.0f}")
                        s.window, s.window_points, window_start = {}, 0, time.perf_counter()
                    # A step checkpoint due at the epoch's last batch is taken after the epoch ends.
                    if cfg.checkpoint_every_steps and s.step % cfg.checkpoint_every_steps == 0 and s.batch < bpe:
                        self._checkpoint(started)
                step_due = bool(cfg.checkpoint_every_steps) and s.step % cfg.checkpoint_every_steps == 0
                self.method.after_epoch(s.epoch)
                s.epoch, s.batch = s.epoch + 1, 0
                self._end_of_epoch()
                if (s.epoch % cfg.checkpoint_every == 0 or s.epoch == cfg.epochs or step_due
                        or self._patience_spent()):
                    self._checkpoint(started)
                if self._stop_requested():
                    self._interrupt(started)
        finally:
            bar.close()
        s.elapsed = time.perf_counter() - started
        stopped_early = self._patience_spent() and s.epoch < cfg.epochs
        if self._best is not None:  # early stopping keeps the best validation's parameters
            self.model.load_state_dict(self._best["model"])
            self.method.load_state_dict(self._best["method"])
        return {"epochs": s.epoch, "steps": s.step, "seconds": s.elapsed, "skipped_steps": s.skipped_steps,
                "rollbacks": s.rollbacks, "lr_scale": s.lr_scale, "best_valid": s.best_valid,
                "best_epoch": s.best_epoch, "stopped_early": stopped_early}

    def _patience_spent(self) -> bool:
        return bool(self.config.patience) and self.state.stale_validations >= self.config.patience

    def _interrupt(self, started: float) -> None:
        """Honour a stop request: checkpoint the state reached (unless just written) and stop."""
        s = self.state
        s.elapsed = time.perf_counter() - started
        path = self.run.checkpoints / checkpoint_name(s.step)
        if self._saved_at != (s.epoch, s.step):
            path = self.save()
        name = self.stop.name or "stop request"
        raise TrainingInterrupted(
            name, path,
            f"training stopped by {name} after step {s.step} (epoch {s.epoch}, batch {s.batch} of "
            f"{self.batches_per_epoch}); checkpoint written: {path}\n"
            f"Resume with:\n  {resume_command(self.run.root)}"
            + (f" --nproc {self.parallel.world}" if self.parallel is not None else ""),
        )

    def _end_of_epoch(self) -> None:
        cfg, s = self.config, self.state
        if self.validate is None or not validation_due(s.epoch, cfg.valid_every, cfg.epochs):
            return
        estimate = self.validate(self.model)
        self.model.train()
        if math.isfinite(estimate.mean) and estimate.mean > s.best_valid:
            s.best_valid, s.best_epoch, s.stale_validations = estimate.mean, s.epoch, 0
            if cfg.patience:
                self._best = {"model": _copy_state(self.model), "method": _copy_state(self.method)}
        else:
            s.stale_validations += 1
        record = {"kind": "valid", "step": s.step, "epoch": s.epoch, "valid_bound": estimate.mean,
                  "valid_stderr": estimate.stderr, "estimator": estimate.estimator}
        s.history.append(record)
        self._append_metrics(record)
        self.log(f"epoch {s.epoch}/{cfg.epochs}: validation {estimate.estimator} = "
                 f"{estimate.mean:.3f} ± {estimate.stderr:.3f}")


def _copy_state(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class _RolledBack(Exception):
    """Internal: the rollback policy restored a checkpoint; the loop starts again from it."""
