"""The full configuration of a training run. It is saved in the run folder, so a run can be
resumed or re-evaluated from its folder alone.

`validate()` checks every field before anything is built, and its errors name the field, the value
given and the values allowed."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from deepem.data.corruption import parse_corruption
from deepem.models.config import ModelConfig
from deepem.models.likelihoods import LIKELIHOODS
from deepem.models.networks import ACTIVATIONS
from deepem.training.optim import validate_optim
from deepem.training.schedules import SCHEDULES

NAN_POLICIES = ("stop", "skip", "rollback")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: fields a resumed run may change: they decide how the run is watched and kept, or how far it goes,
#: never what the steps already taken computed.
RESUME_OVERRIDABLE = ("epochs", "nan_policy", "max_rollbacks", "max_consecutive_skips", "keep_checkpoints",
                      "checkpoint_every", "checkpoint_every_steps", "valid_every", "data_dir", "device",
                      "patience")


class ConfigError(ValueError):
    """A setting with a value that is not allowed; the message names the field and the allowed values."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class TrainConfig:
    dataset: str = "digits"
    method: str = "iwae"
    particles: int | None = None  # None: the method's own default (5 for IWAE, 50 for REM, ...)
    method_options: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 10
    batch_size: int = 20
    lr: float = 1e-3
    schedule: str = "constant"
    adam_eps: float = 1e-4
    #: per parameter group ("theta", "phi", or a group the method owns): {"lr", "betas", "steps"};
    #: a group not named here uses lr, betas (0.9, 0.999) and one step per batch. See training/optim.py.
    optim: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    data_dir: str | None = None
    missing: str | None = None  # corrupt the data: "mcar:P" or "patches:N" (data/corruption.py); None: complete
    missing_seed: int = 0  # the seed of the missing-data masks (drawn once, the same on resume)
    train_limit: int | None = None  # use only the first N training points (quick experiments)
    valid_every: int = 1  # epochs between validation bounds; 0 = never
    #: early stopping: stop after this many validations in a row without a new best bound (0 = off);
    #: the best validation's parameters are kept in the checkpoint and are what evaluation loads
    patience: int = 0
    valid_particles: int = 100
    valid_limit: int | None = 1000
    checkpoint_every: int = 1  # epochs between checkpoints
    checkpoint_every_steps: int = 0  # also every N steps (0 = off), for long epochs
    keep_checkpoints: int = 3
    nan_policy: str = "stop"
    max_rollbacks: int = 5  # rollback policy: give up after this many rollbacks in one run
    max_consecutive_skips: int = 20  # skip policy: give up after this many skipped steps in a row
    device: str = "cpu"
    dtype: str = "float32"

    def validate(self, groups: tuple[str, ...] | None = None) -> None:
        """Raise ConfigError naming the first field whose value is not allowed.

        `groups`: the parameter groups of the method, to check the names in `optim` against (the
        method and dataset names themselves are checked where they are looked up, in
        workflows/assembly.py: this module knows no registry)."""

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"invalid {name} = {getattr(self, name)!r}: must be {allowed}")

        def need_int(name: str, minimum: int, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if allow_none and v is None:
                return
            need(_is_int(v) and v >= minimum, name,
                 f"an integer >= {minimum}" + (" or None" if allow_none else ""))

        def need_positive(name: str) -> None:
            v = getattr(self, name)
            need(_is_number(v) and v > 0, name, "a positive finite number")

        need(isinstance(self.dataset, str) and bool(self.dataset), "dataset", "a dataset name")
        need(isinstance(self.method, str) and bool(self.method), "method", "a method name")
        need_int("particles", 1, allow_none=True)
        need(isinstance(self.method_options, dict), "method_options", "a dictionary of method options")
        given = self.method_options.get("particles")
        if self.particles is not None and given is not None and given != self.particles:
            raise ConfigError(f"invalid method_options = {self.method_options!r}: particles = {given!r} "
                              f"conflicts with particles = {self.particles!r} (--particles); give K once")
        for name in ("epochs", "batch_size", "valid_particles", "checkpoint_every", "keep_checkpoints"):
            need_int(name, 1)
        for name in ("valid_every", "checkpoint_every_steps", "max_rollbacks", "max_consecutive_skips", "patience"):
            need_int(name, 0)
        if self.patience and not self.valid_every:
            raise ConfigError(f"invalid patience = {self.patience!r}: early stopping needs validation; set "
                              "valid_every >= 1 (--valid-every) or patience = 0")
        need_int("seed", 0)
        need_int("train_limit", 1, allow_none=True)
        need_int("valid_limit", 1, allow_none=True)
        need_positive("lr")
        need_positive("adam_eps")
        need(self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}")
        need(self.nan_policy in NAN_POLICIES, "nan_policy", f"one of {', '.join(NAN_POLICIES)}")
        need(self.dtype in DTYPES, "dtype", f"one of {', '.join(DTYPES)}")
        need(self.data_dir is None or isinstance(self.data_dir, str), "data_dir", "a path or None")
        need_int("missing_seed", 0)
        if self.missing is not None:
            try:
                parse_corruption(self.missing)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"invalid missing = {self.missing!r}: {err}") from err
        need(isinstance(self.device, str)
             and (self.device in ("cpu", "cuda", "mps") or self.device.startswith("cuda:")), "device",
             "cpu, cuda, cuda:N or mps")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"invalid device = {self.device!r}: CUDA is not available here; use --device cpu")
        self._validate_model()
        try:
            validate_optim(self.optim, groups)
        except ValueError as err:
            raise ConfigError(f"invalid optim = {self.optim!r}: {err}") from err

    def _validate_model(self) -> None:
        m = self.model
        if not isinstance(m, ModelConfig):
            raise ConfigError(f"invalid model = {m!r}: must be a ModelConfig (or a dict of its fields)")
        if not (_is_int(m.latent_dim) and m.latent_dim >= 1):
            raise ConfigError(f"invalid model.latent_dim = {m.latent_dim!r}: must be an integer >= 1")
        if not (isinstance(m.hidden, (list, tuple)) and all(_is_int(h) and h >= 1 for h in m.hidden)):
            raise ConfigError(f"invalid model.hidden = {m.hidden!r}: must be a list of integers >= 1")
        if m.activation not in ACTIVATIONS:
            raise ConfigError(f"invalid model.activation = {m.activation!r}: must be one of "
                              f"{', '.join(sorted(ACTIVATIONS))}")
        if m.likelihood is not None and m.likelihood not in LIKELIHOODS:
            raise ConfigError(f"invalid model.likelihood = {m.likelihood!r}: must be one of "
                              f"{', '.join(sorted(LIKELIHOODS))} or None (the dataset's own)")
        try:  # latent family, encoder kind and noise dimension, with the model's own messages
            m.validate()
        except (TypeError, ValueError) as err:
            raise ConfigError(f"invalid model settings: {err}") from err

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The configuration of a dictionary (config.json); unknown fields are an error, not ignored."""
        if not isinstance(d, dict):
            raise ConfigError(f"a configuration must be a dictionary of fields, got {type(d).__name__}")
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

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with `overrides` applied, allowed only for RESUME_OVERRIDABLE fields (a resumed run
        must not change what its past steps computed)."""
        bad = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
        if bad:
            raise ConfigError(f"cannot change {', '.join(bad)} when resuming a run; fields that may change: "
                              f"{', '.join(RESUME_OVERRIDABLE)}. Start a new run to change the others")
        return dataclasses.replace(self, **overrides)
