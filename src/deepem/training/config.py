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
from deepem.models.config import ARCHITECTURES, ENCODER_KINDS, LATENTS, ModelConfig
from deepem.models.likelihoods import LIKELIHOODS
from deepem.models.networks import ACTIVATIONS
from deepem.settings import Setting, SettingError, convert, declared, resume_names, setting
from deepem.training.optim import DEFAULT_LR, validate_optim
from deepem.training.schedules import LR_SCHEDULES

NAN_POLICIES = ("stop", "skip", "rollback")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ConfigError(SettingError):
    """A setting with a value that is not allowed; the message names the field and the allowed values."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: the model's settings (models/lvm.py declares their names, types and defaults): help and allowed values
MODEL_SETTINGS: dict[str, dict[str, Any]] = {
    "latent_dim": {"help": "latent dimension", "minimum": 1,
                   "shown": "50; 200 with --latent bernoulli; 150 with mlp-2layer"},
    "hidden": {"help": "MLP widths, e.g. 200,200", "minimum": 1},
    "activation": {"help": "hidden-layer activation", "choices": tuple(sorted(ACTIVATIONS))},
    "likelihood": {"help": "observation model", "choices": tuple(sorted(LIKELIHOODS)),
                   "shown": "the dataset's, bernoulli for binary images"},
    "latent": {"help": "gaussian (N(0, I) prior, diagonal Gaussian q) or bernoulli (a sigmoid belief net: "
                       "learnable Bernoulli prior and q; train it with rws, vimco, nvil, wake-sleep)",
               "choices": LATENTS},
    "encoder": {"help": "explicit (q has a density) or implicit (z = f(x, eps), no density; evaluate with "
                        "--estimator ais)", "choices": ENCODER_KINDS},
    "noise_dim": {"help": "noise dimension of an implicit encoder", "minimum": 1, "shown": "32, as IWAVB"},
    "architecture": {"help": "network preset (`deepem list` describes them): mlp-2layer is Burda et al.'s two "
                             "stochastic layers, conv the gated CNN of Tomczak & Welling (28x28 images), sbn the "
                             "200-200-200 sigmoid belief net of NVIL/VIMCO (with --latent bernoulli)",
                     "choices": tuple(sorted(ARCHITECTURES))},
    "architecture_options": {"flag": False},
}


#: K, the method option every method has: its default is the method's own (its constructor's)
PARTICLES = Setting("particles", int | None, None, "K, particles per data point (a method option)", minimum=1,
                    short="-k", shown="the method's own, e.g. 5 for iwae, 50 for rem-v1; `deepem list` shows them")


@dataclass
class TrainConfig:
    """A run: what it trains (data, corruption, model, method and its options, K among them) and how
    (the loop's settings). Each field is declared once here (deepem/settings.py): the CLI's flags and
    help, validation and the resume rules come from these declarations."""

    dataset: str = setting("digits", "dataset name (see `deepem list`), or a file of your own: .csv / .tsv (empty "
                           "cells, NA, NaN are missing), .npy / .npz (rows, or (N, H, W) images; NaN is missing)")
    method: str = setting("iwae", "training method (see `deepem list`)", short="-m")
    #: the method's keyword options, K ("particles") among them; a method's own default fills K in
    method_options: dict[str, Any] = setting(help="a method option", factory=dict, flag=False)
    model: ModelConfig = setting(help="the model", factory=ModelConfig, flag=False)
    epochs: int = setting(10, "passes over the training data (the maximum with --patience)", minimum=1, resume=True)
    batch_size: int = setting(20, "data points per step", minimum=1)
    lr: float | None = setting(None, "learning rate of theta and phi (Adam); a method's own groups keep the "
                               "method's rate unless --optim sets it", above=0, shown=f"{DEFAULT_LR:g}, or the "
                               "method's paper rates where it has them (avb, iwavb)")
    schedule: str = setting("constant", "learning-rate schedule; 'burda': lr * 10^(-i/7) for 3^i epochs, i = 0..7 "
                            "(Burda et al. 2015)", choices=LR_SCHEDULES)
    adam_eps: float = setting(1e-4, "Adam's epsilon", above=0)
    #: per parameter group ("theta", "phi", or a group the method owns): {"lr", "betas", "steps"}, as in
    #: effect once the run is built (training/optim.py), and where each value came from
    optim: dict[str, dict[str, Any]] = setting(help="optimiser settings per group", factory=dict, flag=False)
    optim_sources: dict[str, dict[str, str]] = setting(help="where each optim value came from", factory=dict,
                                                       flag=False)
    seed: int = setting(0, "seed of the run (initial weights, batches, draws)", minimum=0)
    data_dir: str | None = setting(None, "folder with dataset files", resume=True,
                                   shown="$DEEPEM_DATA or ~/.cache/deepem")
    missing: str | None = setting(None, "train on incomplete data: mcar:P removes each entry with probability P; "
                                  "patches:N removes N of the 3x3 patches of each 28x28 image (masks drawn once, "
                                  "saved with the run)", shown="complete data")
    missing_seed: int = setting(0, "seed of the missing-data masks", minimum=0)
    split: str = setting("0.8,0.1,0.1", "a file dataset: train,valid,test fractions of its rows (drawn with --seed, "
                         "recorded in the run)")
    header: bool | None = setting(None, "a .csv / .tsv dataset: whether its first line names the columns",
                                  shown="detected: a first line with text where the rows have numbers")
    train_limit: int | None = setting(None, "train on the first N points only", minimum=1, shown="all")
    valid_every: int = setting(1, "epochs between validation bounds (0: never)", minimum=0, resume=True)
    patience: int = setting(0, "early stopping: stop when N validations in a row bring no new best bound, and "
                            "evaluate the best validation's parameters (0: off)", minimum=0, resume=True)
    valid_particles: int = setting(100, "K of the validation bound", minimum=1)
    valid_limit: int | None = setting(1000, "validation points used", minimum=1, flag=False)
    checkpoint_every: int = setting(1, "epochs between checkpoints", minimum=1, resume=True)
    checkpoint_every_steps: int = setting(0, "also a checkpoint every N steps (0: off)", minimum=0, resume=True)
    keep_checkpoints: int = setting(3, "checkpoints kept", minimum=1, resume=True)
    nan_policy: str = setting("stop", "on a NaN/inf loss, log-weight or gradient: stop with a diagnosis, skip the "
                              "step, or roll back to the last checkpoint with half the learning rate",
                              choices=NAN_POLICIES, resume=True)
    max_rollbacks: int = setting(5, "rollback policy: give up after this many rollbacks", minimum=0, resume=True)
    max_consecutive_skips: int = setting(20, "skip policy: give up after this many skipped steps in a row",
                                         minimum=0, resume=True)
    device: str = setting("cpu", "cpu, cuda or cuda:N", resume=True)
    dtype: str = setting("float32", "floating-point precision", choices=tuple(DTYPES))

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
        if self.patience and not self.valid_every:
            raise ConfigError(f"invalid patience = {self.patience!r}: early stopping needs validation; set "
                              "valid_every >= 1 (--valid-every) or patience = 0")
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
            s = dataclasses.replace(s, **{k: v for k, v in MODEL_SETTINGS.get(name, {}).items()
                                          if k == "minimum" or (k == "choices" and name in ("activation",
                                                                                             "likelihood"))})
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
