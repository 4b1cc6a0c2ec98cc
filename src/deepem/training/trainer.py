"""The training loop. It owns optimisers (one per parameter group), the schedule, data order,
checkpoints and logging, and knows nothing about what a method computes.

Determinism: the data order and the dynamic binarisation of epoch e come from generators seeded by
(seed, e), and the global torch RNG (used by the methods' sampling) is saved in every checkpoint, so a
resumed run continues exactly where the uninterrupted one would have been."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from deepem.data.base import DataSplits, binarize
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.methods.base import Method, MethodOutput
from deepem.methods.registry import make_method
from deepem.models.lvm import DeepLatentModel
from deepem.training.checkpoint import checkpoint_name, load_latest_good, prune_checkpoints, save_checkpoint
from deepem.training.config import TrainConfig
from deepem.training.guards import NonFiniteError, first_non_finite_grad, non_finite_losses
from deepem.training.run import RunFolder
from deepem.training.schedules import learning_rate_factor
from deepem.training.step import backward_losses, make_optimizers, parameter_groups, zero_grads

LOG_EVERY_STEPS = 50
ROLLBACK_LR_FACTOR = 0.5


def epoch_generator(seed: int, epoch: int, device: str = "cpu") -> torch.Generator:
    """The generator of epoch `epoch`'s data order and binarisation, independent of anything else."""
    return torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + epoch)


def build_model(config: TrainConfig, data: DataSplits) -> DeepLatentModel:
    """The model of `config` for `data`, output bias at the training mean (Burda et al. 2015)."""
    if config.model.likelihood is None:
        config.model.likelihood = data.likelihood
    model = DeepLatentModel.from_config(config.model, data.data_dim, data.train_mean())
    return model.to(config.device, config.torch_dtype)


@dataclass
class TrainState:
    """Where a run stands: what a checkpoint must restore besides parameters and optimisers."""

    epoch: int = 0  # the epoch in progress (or the next one, when batch == 0)
    batch: int = 0  # the next batch of that epoch
    step: int = 0  # optimisation steps taken in all
    lr_scale: float = 1.0  # lowered by the rollback policy
    skipped_steps: int = 0
    elapsed: float = 0.0  # seconds of training before this process
    best_valid: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: str | Path, data: DataSplits | None = None,
                 log: Callable[[str], None] = print, progress: bool = True,
                 batch_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> None:
        from deepem.data import load_dataset  # the data registry imports optional readers lazily

        config.validate()
        self.config = config
        self.run = RunFolder(Path(run_dir))
        self.log = log
        self.progress = progress
        self.batch_hook = batch_hook  # tests use it to poison a batch
        self.data = data if data is not None else load_dataset(config.dataset, config.data_dir)
        train = self.data.train if config.train_limit is None else self.data.train[: config.train_limit]
        self.train_data = train
        self.valid_data = self.data.valid if config.valid_limit is None else self.data.valid[: config.valid_limit]

        torch.manual_seed(config.seed)
        self.model = build_model(config, self.data)
        self._check_data()
        self.method: Method = make_method(config.method, particles=config.particles, **config.method_options)
        self.method.to(config.device, config.torch_dtype)
        self.groups = parameter_groups(self.model, self.method)
        self.optimizers = make_optimizers(self.groups, config.lr, eps=config.adam_eps)
        self.state = TrainState()

    # set-up ------------------------------------------------------------------------------------
    def _check_data(self) -> None:
        sample = self.valid_data[:1000] if self.data.dynamic_binarization else self.train_data[:1000]
        self.model.check_data(sample.to(self.config.device, self.config.torch_dtype))
        if self.data.dynamic_binarization and not ((self.train_data >= 0) & (self.train_data <= 1)).all():
            raise ValueError("dynamic binarisation needs grey levels in [0, 1] in the training data")

    def start(self, force: bool = False) -> None:
        """A new run: create the folder and save the configuration."""
        self.run.create(force=force)
        self.run.write_config(self.config.to_dict())

    def resume(self) -> bool:
        """Restore the newest checkpoint that verifies; False if the run has none yet."""
        self.run.require_run()
        found = load_latest_good(self.run.checkpoints, map_location="cpu", warn=self.log)
        if found is None:
            return False
        path, ckpt = found
        self.load_state(ckpt)
        self.run.truncate_metrics(self.state.step)
        self.log(f"resumed from {path.name}: epoch {self.state.epoch}, batch {self.state.batch}, "
                 f"step {self.state.step}")
        return True

    # checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizers": {g: opt.state_dict() for g, opt in self.optimizers.items()},
            "train_state": {k: getattr(s, k) for k in ("epoch", "batch", "step", "lr_scale",
                                                       "skipped_steps", "elapsed", "best_valid")},
            "history": s.history,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": self.config.to_dict(),
        }

    def load_state(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.method.load_state_dict(ckpt["method"])
        for g, opt in self.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][g])
        for k, v in ckpt["train_state"].items():
            setattr(self.state, k, v)
        self.state.history = list(ckpt.get("history", []))
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])

    def save(self) -> Path:
        path = self.run.checkpoints / checkpoint_name(self.state.step)
        save_checkpoint(path, self.state_dict())
        prune_checkpoints(self.run.checkpoints, self.config.keep_checkpoints)
        return path

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

    def train_step(self, x: torch.Tensor) -> MethodOutput | None:
        """One step with the non-finite guard; None when the step was skipped."""
        for params in self.groups.values():
            zero_grads(params)
        out = self.method(self.model, x)
        bad = non_finite_losses(out)
        if not bad:
            backward_losses(out.losses, self.groups)
            bad = first_non_finite_grad(self.groups)
        if bad:
            return self._handle_non_finite(bad)
        for name in out.losses:
            self.optimizers[name].step()
        self.method.after_update()
        return out

    def _handle_non_finite(self, what: str) -> None:
        s = self.state
        where = (f"method {self.config.method!r}, epoch {s.epoch}, batch {s.batch}, step {s.step}")
        policy = self.config.nan_policy
        for params in self.groups.values():
            zero_grads(params)
        if policy == "skip":
            s.skipped_steps += 1
            self.log(f"warning: non-finite {what} at {where}; step skipped ({s.skipped_steps} so far)")
            return None
        if policy == "rollback":
            found = load_latest_good(self.run.checkpoints, warn=self.log)
            if found is None:
                raise NonFiniteError(f"non-finite {what} at {where} and no checkpoint to roll back to")
            lr_scale = s.lr_scale * ROLLBACK_LR_FACTOR
            self.load_state(found[1])
            self.state.lr_scale = lr_scale
            self._set_learning_rates(self.state.epoch)
            self.log(f"warning: non-finite {what} at {where}; rolled back to {found[0].name} with "
                     f"learning-rate scale {lr_scale:g}")
            raise _RolledBack
        raise NonFiniteError(
            f"non-finite {what} at {where}. Lower --lr, use a larger --adam-eps, or pass "
            "--nan-policy skip|rollback to continue past such steps"
        )

    def fit(self) -> dict[str, Any]:
        """Train to the configured number of epochs from wherever the run stands."""
        while True:
            try:
                return self._fit()
            except _RolledBack:
                continue

    def _fit(self) -> dict[str, Any]:
        cfg, s = self.config, self.state
        total_steps = cfg.epochs * self.batches_per_epoch
        started = time.perf_counter() - s.elapsed
        bar = tqdm(total=total_steps, initial=s.step, disable=not self.progress, unit="step",
                   dynamic_ncols=True, mininterval=1.0)
        window: dict[str, list[float]] = {}
        window_start, window_points = time.perf_counter(), 0
        try:
            while s.epoch < cfg.epochs:
                self._set_learning_rates(s.epoch)
                order, epoch_data = self._epoch_data(s.epoch)
                while s.batch < self.batches_per_epoch:
                    idx = order[s.batch * cfg.batch_size:(s.batch + 1) * cfg.batch_size]
                    x = epoch_data[idx].to(cfg.device, cfg.torch_dtype)
                    if self.batch_hook is not None:
                        x = self.batch_hook(s.step, x)
                    out = self.train_step(x)
                    s.batch += 1
                    s.step += 1
                    bar.update(1)
                    window_points += x.shape[0]
                    if out is not None:
                        for k, v in {**{f"loss_{g}": float(t.detach()) for g, t in out.losses.items()},
                                     **out.diagnostics}.items():
                            window.setdefault(k, []).append(v)
                    if s.step % LOG_EVERY_STEPS == 0 or s.batch == self.batches_per_epoch:
                        rate = window_points / max(time.perf_counter() - window_start, 1e-9)
                        record = {k: sum(v) / len(v) for k, v in window.items()}
                        record.update(kind="train", step=s.step, epoch=s.epoch, points_per_sec=rate)
                        self.run.append_metrics(record)
                        bar.set_postfix(epoch=s.epoch, loss=f"{record.get('loss_theta', float('nan')):.2f}",
                                        pts_s=f"{rate:.0f}")
                        window, window_start, window_points = {}, time.perf_counter(), 0
                    if cfg.checkpoint_every_steps and s.step % cfg.checkpoint_every_steps == 0:
                        s.elapsed = time.perf_counter() - started
                        self.save()
                self.method.after_epoch(s.epoch)
                s.epoch, s.batch = s.epoch + 1, 0
                self._end_of_epoch()
                s.elapsed = time.perf_counter() - started
                if s.epoch % cfg.checkpoint_every == 0 or s.epoch == cfg.epochs:
                    self.save()
        finally:
            bar.close()
        return {"epochs": s.epoch, "steps": s.step, "seconds": s.elapsed, "skipped_steps": s.skipped_steps,
                "best_valid": s.best_valid}

    def _end_of_epoch(self) -> None:
        cfg, s = self.config, self.state
        if not cfg.valid_every or (s.epoch % cfg.valid_every and s.epoch != cfg.epochs):
            return
        # A generator of its own: validation must not move the training RNG (exact resume).
        estimate = iw_log_likelihood(self.model, self.valid_data, cfg.valid_particles, seed=cfg.seed)
        self.model.train()
        s.best_valid = max(s.best_valid, estimate.mean)
        record = {"kind": "valid", "step": s.step, "epoch": s.epoch, "valid_bound": estimate.mean,
                  "valid_stderr": estimate.stderr, "estimator": estimate.estimator}
        s.history.append(record)
        self.run.append_metrics(record)
        self.log(f"epoch {s.epoch}/{cfg.epochs}: validation {estimate.estimator} = "
                 f"{estimate.mean:.3f} ± {estimate.stderr:.3f}")


class _RolledBack(Exception):
    """Internal: the rollback policy restored a checkpoint; the loop starts again from it."""
