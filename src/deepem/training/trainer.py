"""One training run: its model, method, optimisers, data and run folder, and the loop's record of
where it stands (`state`). `fit` trains it with the one loop (loop.py) and the single-model stepper
(steppers.py); vectorised seeds (vectorised.py) hand the same loop S such runs and their stacked step.

Exact resume. Everything that decides the future of a run is in its checkpoint (checkpoint_contents.py);
the data order of an epoch needs no state (data_order.py); validation draws from a generator of its
own. metrics.jsonl is cut back on resume to the records written before the checkpoint. On CPU an
interrupted and resumed run therefore ends bitwise equal to the uninterrupted one.

Non-finite values. The step (step.py) applies nothing unless the batch, every loss, the log-weights
and every gradient are finite; the loop asks the `nan_policy` (nonfinite.py) what to do about a bad
step (stop with a diagnosis, skip it, or roll back to the last good checkpoint with half the learning
rate, a bounded number of times), and a checkpoint whose state is not finite is never written."""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from deepem.methods.base import Method
from deepem.models.lvm import DeepLatentModel
from deepem.training import checkpoint_contents, nonfinite
from deepem.training.checkpoint_file import checkpoint_name, load_latest_good
from deepem.training.config import DEFAULT_LR, ConfigError, TrainConfig
from deepem.training.cuda_graph import graphed_step
from deepem.training.data_order import batches_per_epoch
from deepem.training.datacheck import DataError, check_split, check_values
from deepem.training.distributed import (
    Parallel,
    check_shardable,
    check_world_size,
    distributed_state,
    restore_rank_rng,
)
from deepem.training.early_stopping import EarlyStopping
from deepem.training.guards import NonFiniteError
from deepem.training.loop import fit_runs
from deepem.training.metrics import MetricsLogger, logged_extras
from deepem.training.optim import group_settings, parameter_groups, scale_learning_rates, settings_in_effect
from deepem.training.run import RunFolder
from deepem.training.schedules import learning_rate_factor
from deepem.training.signals import StopRequest
from deepem.training.state import TrainState
from deepem.training.step import TrainStep
from deepem.training.steppers import SingleStepper
from deepem.training.tensorboard import FOLDER, TensorBoardLogger, Watcher, require_tensorboard
from deepem.training.validation import Validator


class Trainer:
    """Train `model` with `method` on the rows of `train_data` into the run folder `run_dir` (None: in
    memory, nothing written; the newest checkpoint is kept in memory for the non-finite rollback).

    settings: the loop's settings (epochs, batch_size, lr, optim, schedule, seed, checkpoints,
        nan_policy, device, dtype, tensorboard, ...); config.json records them. Default: TrainConfig() with the
        method's name and K. The data and model fields (dataset, model, train_limit, ...) are recorded
        only: whoever builds the model and data applies them (workflows/assembly.py for the CLI).
    validate: called with the model after every `valid_every`-th epoch; None: no validation.
    train_mask: observed-data mask shaped like train_data (True = observed); None = fully observed.
    dynamic_binarization: draw binary pixels from grey levels afresh each epoch.
    batch_hook, stop: for tests (poison or kill at a step) and signal handling (workflows/train.py).
    parallel: this process's rank in a data-parallel job (training/distributed.py); None: one process.
    watch: with `settings.tensorboard`, what TensorBoard shows after each validation besides the bound
        (figures of samples and reconstructions, KL to the prior; workflows/watch.py); None: the bound only.

    The method is bound to the model (`method.bind`) before optimisers are built or a checkpoint is
    loaded. Seed the RNGs before building the model for a reproducible run."""

    def __init__(self, model: DeepLatentModel, method: Method, train_data: Tensor, run_dir: str | Path | None,
                 settings: TrainConfig | None = None, *, validate: Validator | None = None,
                 train_mask: Tensor | None = None, dynamic_binarization: bool = False,
                 log: Callable[[str], None] = print, progress: bool = True,
                 batch_hook: Callable[[int, Tensor], Tensor] | None = None,
                 stop: StopRequest | None = None, parallel: Parallel | None = None,
                 watch: Watcher | None = None, data_transform: dict[str, Any] | None = None) -> None:
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
        self.data_transform = data_transform  # written into every checkpoint: the model then loads without its data
        self.dynamic_binarization = dynamic_binarization
        self.validate = validate
        if self.config.patience and validate is None:
            raise ConfigError(f"patience = {self.config.patience} needs a validation bound, and this run has none "
                              "(no validator, or a q(z|x) without a density); set patience = 0")
        # In memory: a RunFolder that is never written (`writes` is False), named so that messages say so.
        self.in_memory = run_dir is None
        self.run = RunFolder(Path("<in memory>") if run_dir is None else Path(run_dir))
        self._kept: dict[str, Any] | None = None  # in memory: the newest checkpoint's state
        self.log = log
        self.progress = progress
        self.batch_hook = batch_hook
        self.stop = stop if stop is not None else StopRequest()
        self.step = TrainStep(model, method, group_settings(groups, self.config.optim, self.config.lr,
                                                            self.config.adam_eps), precision=self.config.precision,
                              compile=self.config.compile)
        self.state = TrainState()
        # data parallel: gradients averaged in the step; only rank 0 writes the run folder
        self.parallel = parallel
        if parallel is not None:
            check_shardable(train_data.shape[0], self.config.batch_size, parallel.world)
            self.step.grad_sync = parallel.grad_sync
        #: the step replayed as one CUDA graph (`cuda_graph`; training/cuda_graph.py), which the loop then
        #: takes instead of `step`; refused here, before anything is written, where it cannot run
        self.graphed = graphed_step(self.step, self.config.compile) if self.config.cuda_graph else None
        #: (epoch, step) of the newest checkpoint written, None when the state differs from every checkpoint
        self.saved_at: tuple[int, int] | None = None
        self.early_stopping = EarlyStopping(self.config.patience, self.config.tol)
        #: where records go besides metrics.jsonl (the writing rank only): TensorBoard's event files
        self.logger: MetricsLogger | None = None
        if self.config.tensorboard:
            require_tensorboard()  # refused before anything is written
            if self.writes:
                self.logger = TensorBoardLogger(self.run.root / FOLDER, watch)

    @property
    def optimizers(self) -> dict[str, torch.optim.Adam]:
        return self.step.optimizers

    @property
    def batches_per_epoch(self) -> int:
        return batches_per_epoch(self.train_data.shape[0], self.config.batch_size)

    @property
    def budget_updates(self) -> int:
        """The run's whole budget in updates (TrainConfig.budget_updates on its training rows)."""
        return self.config.budget_updates(self.train_data.shape[0])

    # set-up ------------------------------------------------------------------------------------
    def start(self, force: bool = False) -> None:
        """A new run: create the folder, save the configuration and a step-0 checkpoint (so that the
        rollback policy and --resume always have a state to return to)."""
        if self.writes:
            self.run.create(force=force)
            self.run.write_config(self.config.to_dict())
        self.save()

    def resume(self) -> bool:
        """Restore the newest checkpoint that verifies; False if the run has none (it then starts
        again from step 0, which the seed makes identical to its first start)."""
        self.run.require_run()
        checkpoint_contents.check_same_run(self.run, self.config)
        if self.writes and self.run.read_config() != self.config.to_dict():
            # Only fields a resumed run may change differ (epochs, checkpointing, ...): record them, so that
            # config.json says how far the run now goes.
            self.run.write_config(self.config.to_dict())
        found = load_latest_good(self.run.checkpoints, map_location="cpu", warn=self.log,
                                 validate=self._check_fits)
        if found is None:
            self.log(f"warning: no usable checkpoint in {self.run.checkpoints}: starting the run again "
                     "from step 0")
            self.truncate_metrics(0)
            self._restart_logger()
            self.save()
            return False
        path, ckpt = found
        self.load_state(ckpt)
        self._restart_logger()
        if "metrics_records" in ckpt["train_state"]:  # (absent from checkpoints of format 1)
            self.truncate_metrics(self.state.metrics_records)
        self.log(f"resumed from {path.name}: epoch {self.state.epoch}, batch {self.state.batch}, "
                 f"step {self.state.step}")
        return True

    # checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = checkpoint_contents.training_state(self.model, self.method, self.optimizers, self.state,
                                                   self.config.to_dict(), self.step.scaler)
        if self.parallel is not None:
            state.update(distributed_state(self.parallel))
        if self.early_stopping.best is not None:  # what evaluation loads (workflows/loading.py)
            state["best"] = self.early_stopping.best
        state["data_dim"] = self.model.data_dim  # with config.json, enough to rebuild the network alone
        if self.data_transform is not None:
            state["data_transform"] = self.data_transform
        return state

    def _check_fits(self, ckpt: dict[str, Any]) -> None:
        checkpoint_contents.check_fits(ckpt, self.model, self.optimizers)

    def load_state(self, ckpt: dict[str, Any]) -> None:
        check_world_size(ckpt, self.parallel, self.run.root)
        self.state = checkpoint_contents.restore(ckpt, self.model, self.method, self.optimizers,
                                                 self.step.scaler)
        if self.parallel is not None:
            restore_rank_rng(ckpt, self.parallel)
        self.early_stopping.best = ckpt.get("best")
        self.saved_at = (self.state.epoch, self.state.step)

    def save(self) -> Path:
        """Write a checkpoint of the current state (NonFiniteError, and nothing written, if some of it
        is not finite)."""
        state = self.state_dict()
        if not self.writes:  # another rank writes; this one refuses a non-finite state as the writer does
            # One test of every tensor's sum; the search that names the bad tensor only when it fails.
            if not state_finite(state):
                checkpoint_contents.check_finite(state, self.run, self.where())
            path = self.run.checkpoints / checkpoint_name(self.state.step)
            if self.in_memory:  # (a copy: the state holds the live parameters)
                self._kept = copied(state)
        else:
            path = checkpoint_contents.write(self.run, state, self.state.step, self.config.keep_checkpoints,
                                             self.where())
        self.saved_at = (self.state.epoch, self.state.step)
        if self.logger is not None:  # what the checkpoint covers is on disk in every log
            self.logger.flush()
        return path

    def roll_back(self, diagnosis: str) -> None:
        """Restore the newest good checkpoint with half the learning rate (the non-finite policy decided
        so); NonFiniteError when there is none."""
        found = load_latest_good(self.run.checkpoints, warn=self.log, validate=self._check_fits) \
            if not self.in_memory else None if self._kept is None else (Path("memory"), copied(self._kept))
        if found is None:
            raise NonFiniteError(f"{diagnosis}; no usable checkpoint to roll back to")
        before = self.state
        self.load_state(found[1])
        nonfinite.carry_over(self.state, before)
        self._restart_logger()
        self.saved_at = None  # the state now differs from the checkpoint's (lr scale, rollbacks)
        self.truncate_metrics(self.state.metrics_records)
        self.append_metrics({"kind": "nonfinite", "action": "rollback", "what": diagnosis,
                             "step": self.state.step, "epoch": self.state.epoch, "lr_scale": self.state.lr_scale})
        self.set_learning_rates(self.state.epoch)
        self.log(f"warning: {diagnosis}; rolled back to {found[0].name} (rollback {self.state.rollbacks} of at "
                 f"most {self.config.max_rollbacks}), learning-rate scale now {self.state.lr_scale:g}")

    # what the loop asks of a run -----------------------------------------------------------------
    def where(self, at: tuple[int, int, int] | None = None) -> str:
        """Where the run stands, or the step at (step, epoch, batch), for messages."""
        step, epoch, batch = at if at is not None else (self.state.step, self.state.epoch, self.state.batch)
        return (f"method {self.config.method!r}, epoch {epoch}, batch {batch} of {self.batches_per_epoch}"
                f" (step {step})")

    @property
    def writes(self) -> bool:
        """Whether this process writes the run folder (always, but in memory and for ranks > 0 of a
        parallel job)."""
        return not self.in_memory and (self.parallel is None or self.parallel.is_writer)

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.writes:
            self.run.append_metrics(record)
            if self.logger is not None:
                rates = {g: opt.param_groups[0]["lr"] for g, opt in self.optimizers.items()}
                self.logger.write({**record, **logged_extras(rates, self.state.skipped_steps)}
                                  if record.get("kind") == "train" else record)
        self.state.metrics_records += 1

    def _restart_logger(self) -> None:
        """The run goes on from the state just loaded: the logger's later points are void."""
        if self.logger is not None:
            self.logger.restart(self.state.step)

    def truncate_metrics(self, records: int) -> None:
        if self.writes:
            self.run.truncate_metrics(records)

    def set_learning_rates(self, epoch: int) -> None:
        """The schedule's rates for `epoch`, scaled by the rollbacks' factor."""
        factor = learning_rate_factor(self.config.schedule, epoch) * self.state.lr_scale
        scale_learning_rates(self.optimizers, self.step.settings, factor)

    def validate_epoch(self) -> None:
        """Validate at the end of the epoch just finished, tell early stopping, record and log the bound."""
        cfg, s = self.config, self.state
        if self.validate is None:
            return
        estimate = self.validate(self.model)
        self.model.train()
        self.early_stopping.observe(s, estimate.mean, self.model, self.method)
        record = {"kind": "valid", "step": s.step, "epoch": s.epoch, "valid_bound": estimate.mean,
                  "valid_stderr": estimate.stderr, "estimator": estimate.estimator}
        s.history.append(record)
        self.append_metrics(record)
        if self.logger is not None:
            self.logger.validated(s.step, self.model)
        when = f"step {s.step}/{self.budget_updates}" if cfg.max_iter is not None \
            else f"epoch {s.epoch}/{cfg.epochs}"
        self.log(f"{when}: validation {estimate.estimator} = "
                 f"{estimate.mean:.3f} ± {estimate.stderr:.3f}")

    def finish(self, elapsed: float) -> dict[str, Any]:
        """After the last epoch: keep the best validation's parameters (early stopping); the summary."""
        s = self.state
        s.elapsed = elapsed
        cfg = self.config
        stopped_early = self.early_stopping.spent(s) and (s.epoch < cfg.epochs if cfg.max_iter is None else
                                                          s.step < self.budget_updates)
        self.early_stopping.restore_best(self.model, self.method)
        if self.logger is not None:
            self.logger.close()
        return {"epochs": s.epoch, "steps": s.step, "seconds": s.elapsed, "skipped_steps": s.skipped_steps,
                "rollbacks": s.rollbacks, "lr_scale": s.lr_scale, "best_valid": s.best_valid,
                "best_epoch": s.best_epoch, "stopped_early": stopped_early,
                # the update whose parameters the model holds now (the best validation's, with patience)
                "best_step": s.step if self.early_stopping.best is None else self.early_stopping.best["step"]}

    # training ------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to the configured number of epochs from wherever the run stands.

        Raises TrainingInterrupted (after writing a checkpoint) when `self.stop` is set, and
        NonFiniteError when the non-finite policy gives up."""
        return fit_runs([self], SingleStepper(self), self.stop, progress=self.progress,
                        parallel=self.parallel)[0]


def state_finite(state: dict[str, Any]) -> bool:
    """Whether every floating tensor of the model, method and optimiser states of a checkpoint's state is
    finite (what `checkpoint_contents.check_finite` checks), from one sum per tensor: a sum is NaN or inf whenever
    an entry is, so False may also mean a finite sum overflowed (the caller then runs the exact check). Read
    only: guards.all_finite's fused check writes the values back, which under flushed denormals would zero
    subnormal ones."""
    found: list[Tensor] = []
    stack: list[Any] = [state[k] for k in ("model", "method", "optimizers")]
    while stack:
        item = stack.pop()
        if isinstance(item, Tensor):
            if item.is_floating_point() and item.numel():
                found.append(item.detach())
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return not found or bool(torch.stack([t.sum() for t in found]).isfinite().all())


def copied(tree: Any) -> Any:
    """A copy of a checkpoint's state that shares nothing mutable with it: tensors cloned, containers
    rebuilt, immutable values shared. (copy.deepcopy gives the same values; it took about half of an
    in-memory checkpoint's time on a small table, walking every int of the RNG states through its memo.)"""
    if isinstance(tree, Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        out = type(tree)() if type(tree) in (dict, OrderedDict) else None
        if out is None:
            return copy.deepcopy(tree)
        for k, v in tree.items():
            out[k] = copied(v)
        if hasattr(tree, "_metadata"):  # (a module's state_dict: the versions load_state_dict reads)
            out._metadata = copy.deepcopy(tree._metadata)
        return out
    if isinstance(tree, list):
        return [copied(v) for v in tree]
    if isinstance(tree, tuple) and type(tree) is tuple:
        return tuple(copied(v) for v in tree)
    if tree is None or isinstance(tree, (bool, int, float, str, bytes)):
        return tree
    return copy.deepcopy(tree)
