"""The full configuration of a training run. It is saved in the run folder, so a run can be
resumed or re-evaluated from its folder alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from deepem.models.lvm import ModelConfig
from deepem.training.schedules import SCHEDULES

NAN_POLICIES = ("stop", "skip", "rollback")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ConfigError(ValueError):
    """A setting with a value that is not allowed; the message names the field and the allowed values."""


@dataclass
class TrainConfig:
    dataset: str = "digits"
    method: str = "iwae"
    particles: int = 5
    method_options: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 10
    batch_size: int = 20
    lr: float = 1e-3
    schedule: str = "constant"
    adam_eps: float = 1e-4
    seed: int = 0
    data_dir: str | None = None
    train_limit: int | None = None  # use only the first N training points (quick experiments)
    valid_every: int = 1  # epochs between validation bounds; 0 = never
    valid_particles: int = 100
    valid_limit: int | None = 1000
    checkpoint_every: int = 1  # epochs between checkpoints
    checkpoint_every_steps: int = 0  # also every N steps (0 = off), for long epochs
    keep_checkpoints: int = 3
    nan_policy: str = "stop"
    device: str = "cpu"
    dtype: str = "float32"

    def validate(self) -> None:
        from deepem.methods.registry import METHODS  # late import: methods import training helpers

        def need(ok: bool, name: str, allowed: str, value: Any) -> None:
            if not ok:
                raise ConfigError(f"invalid {name} = {value!r}: must be {allowed}")

        need(self.method in METHODS, "method", f"one of {', '.join(sorted(METHODS))}", self.method)
        need(isinstance(self.particles, int) and self.particles >= 1, "particles", "an integer >= 1",
             self.particles)
        need(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        need(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        need(self.lr > 0, "lr", "a positive number", self.lr)
        need(self.adam_eps > 0, "adam_eps", "a positive number", self.adam_eps)
        need(self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}", self.schedule)
        need(self.train_limit is None or self.train_limit >= 1, "train_limit", "None or >= 1",
             self.train_limit)
        need(self.valid_every >= 0, "valid_every", "an integer >= 0", self.valid_every)
        need(self.valid_particles >= 1, "valid_particles", "an integer >= 1", self.valid_particles)
        need(self.checkpoint_every >= 1, "checkpoint_every", "an integer >= 1", self.checkpoint_every)
        need(self.checkpoint_every_steps >= 0, "checkpoint_every_steps", "an integer >= 0",
             self.checkpoint_every_steps)
        need(self.keep_checkpoints >= 1, "keep_checkpoints", "an integer >= 1", self.keep_checkpoints)
        need(self.nan_policy in NAN_POLICIES, "nan_policy", f"one of {', '.join(NAN_POLICIES)}",
             self.nan_policy)
        need(self.dtype in DTYPES, "dtype", f"one of {', '.join(DTYPES)}", self.dtype)
        need(self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps", "device",
             "cpu, cuda, cuda:N or mps", self.device)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device = {self.device!r} but CUDA is not available here; use --device cpu")
        try:
            self.model.validate()
        except ValueError as err:
            raise ConfigError(str(err)) from err

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config fields {unknown}; known fields: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("model"), dict):
            mknown = {f.name for f in dataclasses.fields(ModelConfig)}
            bad = sorted(set(d["model"]) - mknown)
            if bad:
                raise ConfigError(f"unknown model fields {bad}; known fields: {sorted(mknown)}")
            d["model"] = ModelConfig(**d["model"])
        return cls(**d)
