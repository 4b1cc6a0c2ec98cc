"""The full configuration of a training run. It is saved in the run folder, so a run can be
resumed or re-evaluated from its folder alone.

`validate()` checks every field before anything is built, and its errors name the field, the value
given and the values allowed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from deepem.data.corruption import parse_corruption
from deepem.data.own_dataset import parse_fractions
from deepem.declarations.run import DEFAULT_LR, NAN_POLICIES, PARTICLES, RunSettings
from deepem.models.config import ModelConfig
from deepem.settings import SettingError, convert, declared, resume_names, setting
from deepem.training.data_order import batches_per_epoch
from deepem.training.optim import validate_optim

#: the torch dtype of each declared dtype name (declarations/run.py DTYPE_NAMES)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ConfigError(SettingError):
    """A setting with a value that is not allowed; the message names the field and the allowed values."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class TrainConfig(RunSettings):
    """A run: what it trains and how. Each field is declared once, without torch, in
    deepem/declarations/run.py (the CLI builds its flags from there before torch is imported); this
    class adds the checks that tie fields together and the conversions."""

    model: ModelConfig = setting(help="the model", factory=ModelConfig, flag=False)

    def budget_updates(self, rows: int) -> int:
        """The budget in updates on `rows` training rows: max_iter, cut to max_epochs passes' worth of rows
        (round(max_epochs * rows / batch_size) updates, the count benchmarks/budget_sweep.py measured) when
        that comes first; without max_iter, every batch of `epochs` epochs."""
        if self.max_iter is None:
            return self.epochs * batches_per_epoch(rows, self.batch_size)
        if self.max_epochs is None:
            return self.max_iter
        return min(self.max_iter, max(1, round(self.max_epochs * rows / self.batch_size)))

    @property
    def particles(self) -> int | None:
        """K: the method option "particles" (None until the method's default fills it in)."""
        return self.method_options.get("particles")

    def validate(self, groups: tuple[str, ...] | None = None) -> None:
        """Raise ConfigError naming the first field whose value is not allowed: each field against its
        declaration (type, range, choices), then what ties fields together.

        `groups`: the parameter groups of the method, to check the names in `optim` against (the
        method and dataset names themselves are checked where they are looked up, in
        workflows/assembly.py: this module knows no registry)."""
        for name, s in declared(TrainConfig).items():
            if name == "model":
                continue
            try:
                convert(s, getattr(self, name))
            except SettingError as err:
                raise ConfigError(str(err)) from None
        if not self.dataset or not self.method:
            raise ConfigError(f"invalid dataset/method = {self.dataset!r}/{self.method!r}: must be a name")
        k = self.particles
        if k is not None and not (_is_int(k) and k >= 1):
            raise ConfigError(f"invalid particles = {k!r}: must be an integer >= 1 (K)")
        if self.patience and not (self.valid_every or self.valid_every_steps):
            raise ConfigError(f"invalid patience = {self.patience!r}: early stopping needs validation; set "
                              "valid_every >= 1 (--valid-every), valid_every_steps >= 1 or patience = 0")
        if self.validation_fraction and not (self.valid_every or self.valid_every_steps):
            raise ConfigError(f"invalid validation_fraction = {self.validation_fraction!r}: held-out cells need "
                              "validation; set valid_every >= 1, valid_every_steps >= 1 or validation_fraction = 0")
        if self.missing is not None:
            try:
                parse_corruption(self.missing)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"invalid missing = {self.missing!r}: {err}") from err
        try:
            parse_fractions(self.split)
        except ValueError as err:
            raise ConfigError(f"invalid split = {self.split!r}: {err}") from None
        if not (self.device in ("cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ConfigError(f"invalid device = {self.device!r}: must be cpu, cuda, cuda:N or mps")
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
        for name, s in declared(ModelConfig).items():
            # ranges, and the choices the model does not check itself (it names its own presets and kinds)
            if name not in ("activation", "likelihood"):
                s = dataclasses.replace(s, choices=None)
            try:
                convert(s, getattr(m, name))
            except SettingError as err:
                raise ConfigError(f"model.{err}" if str(err).startswith(name) else
                                  str(err).replace("invalid ", "invalid model.", 1)) from None
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
        """The configuration of a dictionary (config.json); unknown fields are an error, not ignored.
        config.json files written before K became a method option (a top-level "particles") are
        migrated here, the one place that reads them."""
        if not isinstance(d, dict):
            raise ConfigError(f"a configuration must be a dictionary of fields, got {type(d).__name__}")
        d = _migrate(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config fields {unknown}; known fields: {sorted(known)}")
        if isinstance(d.get("model"), dict):
            mknown = {f.name for f in dataclasses.fields(ModelConfig)}
            bad = sorted(set(d["model"]) - mknown)
            if bad:
                raise ConfigError(f"unknown model fields {bad}; known fields: {sorted(mknown)}")
            d["model"] = ModelConfig(**d["model"])
        return cls(**d)

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with `overrides` applied, allowed only for the fields declared resume=True (a resumed
        run must not change what its past steps computed). A key may also name a method option
        (particles) or a model field (model.NAME): both are refused, by name."""
        allowed = resume_names(TrainConfig)
        bad = sorted(set(overrides) - set(allowed))
        if bad:
            raise ConfigError(f"cannot change {', '.join(bad)} when resuming a run; fields that may change: "
                              f"{', '.join(allowed)}. Start a new run to change the others")
        return dataclasses.replace(self, **overrides)


#: fields a resumed run may change: they decide how the run is watched and kept, or how far it goes,
#: never what the steps already taken computed (declared resume=True above).
RESUME_OVERRIDABLE = resume_names(TrainConfig)
__all__ = ["DEFAULT_LR", "DTYPES", "NAN_POLICIES", "PARTICLES", "RESUME_OVERRIDABLE", "ConfigError", "TrainConfig"]


def _migrate(d: dict[str, Any]) -> dict[str, Any]:
    """A config.json of an older deepem in today's form: K from the top-level "particles" into the
    method options."""
    d = dict(d)
    if "particles" in d:
        k = d.pop("particles")
        options = dict(d.get("method_options") or {})
        if k is not None:
            if options.get("particles", k) != k:
                raise ConfigError(f"invalid method_options = {options!r}: particles = {options['particles']!r} "
                                  f"conflicts with particles = {k!r}; give K once")
            options["particles"] = k
        d["method_options"] = options
    return d
