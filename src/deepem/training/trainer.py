"""The training loop. It owns optimisers (one per parameter group), the schedule, data order,
checkpoints and logging, and knows nothing about what a method computes.

Exact resume. Everything that decides the future of a run is in its checkpoint: parameters, the
method's own state (annealing counters are buffers), optimiser and schedule state (epoch, batch,
rollback learning-rate scale), the metrics window not yet logged, and every RNG state (torch, CUDA,
numpy, Python). The data order and dynamic binarisation of epoch e come from a generator seeded by
(seed, e) alone, so they need no state; validation draws from a generator of its own and never moves
the training RNG. metrics.jsonl is cut back on resume to the records written before the checkpoint.
On CPU an interrupted and resumed run therefore ends bitwise equal to the uninterrupted one.

Non-finite values. The input batch, every loss, the log-weights and every gradient are checked
before an optimiser step; a bad step is handled by `nan_policy` (stop with a diagnosis, skip the step,
or roll back to the last good checkpoint with half the learning rate, a bounded number of times), and
a checkpoint whose state is not finite is never written."""

from __future__ import annotations

import dataclasses
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from deepem.data.base import DataSplits, binarize
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.inference.numerics import flush_denormals
from deepem.methods.base import Method, MethodOutput
from deepem.methods.registry import make_method
from deepem.models.likelihoods import make_likelihood
from deepem.models.lvm import DeepLatentModel
from deepem.training.checkpoint import (
    CheckpointError,
    checkpoint_name,
    load_latest_good,
    prune_checkpoints,
    save_checkpoint,
)
from deepem.training.config import RESUME_OVERRIDABLE, ConfigError, TrainConfig
from deepem.training.datacheck import check_data
from deepem.training.guards import (
    NonFiniteError,
    first_non_finite_grad,
    first_non_finite_tensor,
    non_finite_input,
    non_finite_losses,
    parameter_names,
)
from deepem.training.rng import capture_rng_state, restore_rng_state, seed_everything
from deepem.training.run import RunFolder
from deepem.training.schedules import learning_rate_factor
from deepem.training.signals import StopRequest
from deepem.training.step import backward_losses, make_optimizers, parameter_groups, zero_grads

LOG_EVERY_STEPS = 50
ROLLBACK_LR_FACTOR = 0.5
CHECKPOINT_FORMAT = 2
_REQUIRED_KEYS = ("model", "method", "optimizers", "train_state", "rng")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch `epoch`'s data order and binarisation, independent of anything else."""
    return torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + epoch)


def resume_command(run_dir: str | Path) -> str:
    """The shell command that continues the run in `run_dir`."""
    return f"deepem train --resume {shlex.quote(str(run_dir))}"


def build_model(config: TrainConfig, data: DataSplits) -> DeepLatentModel:
    """The model of `config` for `data`, output bias at the training mean (Burda et al. 2015)."""
    if config.model.likelihood is None:
        config.model.likelihood = data.likelihood
    model = DeepLatentModel.from_config(config.model, data.data_dim, data.train_mean())
    return model.to(config.device, config.torch_dtype)


@dataclass
class TrainState:
    """Where a run stands: what a checkpoint must restore besides parameters, optimisers and RNGs."""

    epoch: int = 0  # the epoch in progress (or the next one, when batch == 0)
    batch: int = 0  # the next batch of that epoch
    step: int = 0  # batches processed in all, skipped ones included (checkpoints are named by it)
    lr_scale: float = 1.0  # halved by each rollback
    skipped_steps: int = 0
    consecutive_skips: int = 0
    rollbacks: int = 0
    elapsed: float = 0.0  # seconds of training before this process
    best_valid: float = -math.inf
    metrics_records: int = 0  # lines in metrics.jsonl written up to this state
    window: dict[str, list[float]] = field(default_factory=dict)  # train metrics not yet logged
    window_points: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class TrainingInterrupted(Exception):
    """A stop signal was honoured: the step in progress finished and a checkpoint was written."""

    def __init__(self, signal_name: str, checkpoint: Path | None, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name
        self.checkpoint = checkpoint


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: str | Path, data: DataSplits | None = None,
                 log: Callable[[str], None] = print, progress: bool = True,
                 batch_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
                 stop: StopRequest | None = None) -> None:
        from deepem.data import load_dataset  # the data registry imports optional readers lazily

        config.validate(check_dataset=data is None)
        self.config = config
        self.run = RunFolder(Path(run_dir))
        self.log = log
        self.progress = progress
        self.batch_hook = batch_hook  # tests use it to poison a batch or to kill the process
        self.stop = stop if stop is not None else StopRequest()  # set by signal handlers (session.py)
        self.data = data if data is not None else load_dataset(config.dataset, config.data_dir)
        train = self.data.train if config.train_limit is None else self.data.train[: config.train_limit]
        valid = self.data.valid if config.valid_limit is None else self.data.valid[: config.valid_limit]
        self.train_data, self.valid_data = train, valid

        likelihood = make_likelihood(config.model.likelihood or self.data.likelihood)
        check_data(self.data, likelihood.check_data, need_valid=config.valid_every > 0)
        seed_everything(config.seed)
        self.model = build_model(config, self.data)
        self.method: Method = make_method(config.method, particles=config.particles, **config.method_options)
        self.method.to(config.device, config.torch_dtype)
        self.groups = parameter_groups(self.model, self.method)
        self.optimizers = make_optimizers(self.groups, config.lr, eps=config.adam_eps)
        self.names = parameter_names(self.model, self.method)
        self.state = TrainState()
        self._saved_at: tuple[int, int] | None = None  # (epoch, step) of the newest checkpoint written

    # set-up ------------------------------------------------------------------------------------
    def start(self, force: bool = False) -> None:
        """A new run: create the folder, save the configuration and a step-0 checkpoint (so that the
        rollback policy and --resume always have a state to return to)."""
        self.run.create(force=force)
        self.run.write_config(self.config.to_dict())
        self.save()

    def resume(self) -> bool:
        """Restore the newest checkpoint that verifies; False if the run has none (it then starts
        again from step 0, which the seed makes identical to its first start)."""
        self.run.require_run()
        self._check_same_run()
        found = load_latest_good(self.run.checkpoints, map_location="cpu", warn=self.log,
                                 validate=self._validate_checkpoint)
        if found is None:
            self.log(f"warning: no usable checkpoint in {self.run.checkpoints}: starting the run again "
                     "from step 0")
            self.run.truncate_metrics(0)
            self.save()
            return False
        path, ckpt = found
        self.load_state(ckpt)
        if "metrics_records" in ckpt["train_state"]:  # (absent from checkpoints of format 1)
            self.run.truncate_metrics(self.state.metrics_records)
        self.log(f"resumed from {path.name}: epoch {self.state.epoch}, batch {self.state.batch}, "
                 f"step {self.state.step}")
        return True

    def _check_same_run(self) -> None:
        """A resumed run must compute what the run computed: only RESUME_OVERRIDABLE fields may differ."""
        saved = TrainConfig.from_dict(self.run.read_config()).to_dict()
        mine = self.config.to_dict()
        differ = [k for k in mine if k not in RESUME_OVERRIDABLE and saved.get(k) != mine[k]]
        if differ:
            detail = "; ".join(f"{k}: run has {saved.get(k)!r}, given {mine[k]!r}" for k in differ)
            raise ConfigError(f"this configuration does not match the run in {self.run.root} ({detail}); "
                              f"resume with the run's own configuration ({resume_command(self.run.root)})")

    # checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizers": {g: opt.state_dict() for g, opt in self.optimizers.items()},
            "train_state": dataclasses.asdict(self.state),
            "rng": capture_rng_state(),
            "config": self.config.to_dict(),
        }

    def _validate_checkpoint(self, ckpt: dict[str, Any]) -> None:
        """Refuse (CheckpointError) a verified file that does not fit this run: missing entries or
        parameters of other shapes."""
        missing = [k for k in _REQUIRED_KEYS if k not in ckpt]
        if missing:
            raise CheckpointError(f"checkpoint lacks {', '.join(missing)}; it was not written by this trainer")
        mine = self.model.state_dict()
        theirs = ckpt["model"]
        if set(mine) != set(theirs) or any(tuple(mine[k].shape) != tuple(theirs[k].shape) for k in mine):
            raise CheckpointError("checkpoint parameters do not match this model's (different architecture)")
        if set(ckpt["optimizers"]) != set(self.optimizers):
            raise CheckpointError(f"checkpoint has optimisers for {sorted(ckpt['optimizers'])}, this method "
                                  f"needs {sorted(self.optimizers)}")

    def load_state(self, ckpt: dict[str, Any]) -> None:
        self._validate_checkpoint(ckpt)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.method.load_state_dict(ckpt["method"])
            for g, opt in self.optimizers.items():
                opt.load_state_dict(ckpt["optimizers"][g])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"checkpoint does not fit this run: {err}") from err
        known = {f.name for f in dataclasses.fields(TrainState)}
        self.state = TrainState(**{k: v for k, v in ckpt["train_state"].items() if k in known})
        restore_rng_state(ckpt["rng"])
        self._saved_at = (self.state.epoch, self.state.step)

    def save(self) -> Path:
        """Write a checkpoint of the current state, unless some of it is not finite: then raise
        NonFiniteError and leave the good checkpoints as they are."""
        state = self.state_dict()
        bad = first_non_finite_tensor({k: state[k] for k in ("model", "method", "optimizers")})
        if bad:
            raise NonFiniteError(
                f"refusing to write a checkpoint: {bad} is not finite at {self._where()}; the last good "
                f"checkpoint in {self.run.checkpoints} is kept"
            )
        path = self.run.checkpoints / checkpoint_name(self.state.step)
        save_checkpoint(path, state)
        prune_checkpoints(self.run.checkpoints, self.config.keep_checkpoints)
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

    # the loop ----------------------------------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.train_data.shape[0] / self.config.batch_size)

    def _set_learning_rates(self, epoch: int) -> None:
        factor = learning_rate_factor(self.config.schedule, epoch) * self.state.lr_scale
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = self.config.lr * factor

    def _epoch_data(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = epoch_generator(self.config.seed, epoch)
        order = torch.randperm(self.train_data.shape[0], generator=gen)
        data = binarize(self.train_data, gen) if self.data.dynamic_binarization else self.train_data
        return order, data

    def _where(self) -> str:
        s = self.state
        return (f"method {self.config.method!r}, epoch {s.epoch}, batch {s.batch} of {self.batches_per_epoch}"
                f" (step {s.step})")

    def train_step(self, x: torch.Tensor) -> MethodOutput | None:
        """One step with the non-finite guard: nothing reaches the parameters unless the batch, every
        loss, the log-weights and every gradient are finite. None when the step was skipped."""
        for params in self.groups.values():
            zero_grads(params)
        out = None
        bad = non_finite_input(x)
        if not bad:
            out = self.method(self.model, x)
            bad = non_finite_losses(out)
        if not bad:
            backward_losses(out.losses, self.groups)
            bad = first_non_finite_grad(self.groups, self.names)
        if bad:
            return self._handle_non_finite(bad)
        for name in out.losses:
            self.optimizers[name].step()
        self.method.after_update()
        self.state.consecutive_skips = 0
        return out

    def _handle_non_finite(self, what: str) -> None:
        s, cfg = self.state, self.config
        where = self._where()
        for params in self.groups.values():
            zero_grads(params)
        if cfg.nan_policy == "skip":
            s.skipped_steps += 1
            s.consecutive_skips += 1
            if s.consecutive_skips > cfg.max_consecutive_skips:
                raise NonFiniteError(
                    f"non-finite {what} at {where}: {s.consecutive_skips} steps in a row were non-finite "
                    f"(max_consecutive_skips = {cfg.max_consecutive_skips}); giving up. Lower --lr or "
                    "check the data"
                )
            self._append_metrics({"kind": "nonfinite", "action": "skip", "what": what, "step": s.step,
                                  "epoch": s.epoch, "batch": s.batch})
            self.log(f"warning: non-finite {what} at {where}; step skipped ({s.skipped_steps} so far)")
            return None
        if cfg.nan_policy == "rollback":
            self._roll_back(f"non-finite {what} at {where}")
        raise NonFiniteError(
            f"non-finite {what} at {where}. Nothing was applied to the parameters and the last good "
            f"checkpoint is kept. Lower --lr, use a larger --adam-eps, or continue past such steps with "
            f"{resume_command(self.run.root)} --nan-policy skip|rollback"
        )

    def _roll_back(self, diagnosis: str) -> None:
        """Restore the newest good checkpoint with half the learning rate, then restart the loop
        from it (raises _RolledBack); NonFiniteError once max_rollbacks is used up."""
        s, cfg = self.state, self.config
        if s.rollbacks >= cfg.max_rollbacks:
            raise NonFiniteError(
                f"{diagnosis}; gave up after {s.rollbacks} rollbacks (max_rollbacks = {cfg.max_rollbacks}, "
                f"learning-rate scale now {s.lr_scale:g}). Lower --lr or check the data"
            )
        found = load_latest_good(self.run.checkpoints, warn=self.log, validate=self._validate_checkpoint)
        if found is None:
            raise NonFiniteError(f"{diagnosis}; no usable checkpoint to roll back to")
        rollbacks, lr_scale = s.rollbacks + 1, s.lr_scale * ROLLBACK_LR_FACTOR
        skipped = s.skipped_steps
        self.load_state(found[1])
        # What the rollback decided outlives the state it restores, or the next one would repeat it.
        self.state.rollbacks, self.state.lr_scale = rollbacks, lr_scale
        self.state.skipped_steps = max(self.state.skipped_steps, skipped)
        self._saved_at = None  # the state now differs from the checkpoint's (lr scale, rollbacks)
        self.run.truncate_metrics(self.state.metrics_records)
        self._append_metrics({"kind": "nonfinite", "action": "rollback", "what": diagnosis,
                              "step": self.state.step, "epoch": self.state.epoch, "lr_scale": lr_scale})
        self._set_learning_rates(self.state.epoch)
        self.log(f"warning: {diagnosis}; rolled back to {found[0].name} (rollback {rollbacks} of at most "
                 f"{cfg.max_rollbacks}), learning-rate scale now {lr_scale:g}")
        raise _RolledBack

    def _append_metrics(self, record: dict[str, Any]) -> None:
        self.run.append_metrics(record)
        self.state.metrics_records += 1

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
        bar = tqdm(total=cfg.epochs * bpe, initial=min(s.step, cfg.epochs * bpe), disable=not self.progress,
                   unit="step", dynamic_ncols=True, mininterval=1.0)
        window_start = time.perf_counter()
        try:
            while s.epoch < cfg.epochs:
                self._set_learning_rates(s.epoch)
                order, epoch_data = self._epoch_data(s.epoch)
                while s.batch < bpe:
                    if self.stop.requested:
                        self._interrupt(started)
                    idx = order[s.batch * cfg.batch_size:(s.batch + 1) * cfg.batch_size]
                    x = epoch_data[idx].to(cfg.device, cfg.torch_dtype)
                    if self.batch_hook is not None:
                        x = self.batch_hook(s.step, x)
                    out = self.train_step(x)
                    s.batch += 1
                    s.step += 1
                    bar.update(1)
                    s.window_points += x.shape[0]
                    if out is not None:
                        for k, v in {**{f"loss_{g}": float(t.detach()) for g, t in out.losses.items()},
                                     **out.diagnostics}.items():
                            s.window.setdefault(k, []).append(float(v))
                    if s.step % LOG_EVERY_STEPS == 0 or s.batch == bpe:
                        rate = s.window_points / max(time.perf_counter() - window_start, 1e-9)
                        record = {k: sum(v) / len(v) for k, v in s.window.items()}
                        record.update(kind="train", step=s.step, epoch=s.epoch, points_per_sec=rate)
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
                if s.epoch % cfg.checkpoint_every == 0 or s.epoch == cfg.epochs or step_due:
                    self._checkpoint(started)
                if self.stop.requested:
                    self._interrupt(started)
        finally:
            bar.close()
        s.elapsed = time.perf_counter() - started
        return {"epochs": s.epoch, "steps": s.step, "seconds": s.elapsed, "skipped_steps": s.skipped_steps,
                "rollbacks": s.rollbacks, "lr_scale": s.lr_scale, "best_valid": s.best_valid}

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
            f"Resume with:\n  {resume_command(self.run.root)}",
        )

    def _end_of_epoch(self) -> None:
        cfg, s = self.config, self.state
        if not cfg.valid_every or (s.epoch % cfg.valid_every and s.epoch != cfg.epochs):
            return
        # A generator of its own: validation must not move the training RNG (exact resume).
        estimate = iw_log_likelihood(self.model, self.valid_data, cfg.valid_particles, seed=cfg.seed)
        self.model.train()
        if math.isfinite(estimate.mean):
            s.best_valid = max(s.best_valid, estimate.mean)
        record = {"kind": "valid", "step": s.step, "epoch": s.epoch, "valid_bound": estimate.mean,
                  "valid_stderr": estimate.stderr, "estimator": estimate.estimator}
        s.history.append(record)
        self._append_metrics(record)
        self.log(f"epoch {s.epoch}/{cfg.epochs}: validation {estimate.estimator} = "
                 f"{estimate.mean:.3f} ± {estimate.stderr:.3f}")


class _RolledBack(Exception):
    """Internal: the rollback policy restored a checkpoint; the loop starts again from it."""
