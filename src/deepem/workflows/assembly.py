"""From a TrainConfig to the objects a Trainer takes: the data (dataset registry), the model
(`models.make_model`), the method (method registry) and the validator (an importance-weighted
bound on the validation split). The registries are looked up here and only here, so names (of
datasets, methods, options) are checked here too, before anything is built or written."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deepem.data.base import DataSplits, observed_mean
from deepem.data.corruption import CorruptedData
from deepem.data.incomplete import make_incomplete
from deepem.data.own_dataset import FileDataset, load_file_dataset
from deepem.data.registry import DATASETS, load_dataset, load_recorded_dataset
from deepem.data.tables import SUFFIXES
from deepem.evaluation.driver import estimate
from deepem.evaluation.loglik import IWEstimator
from deepem.evaluation.observed_loglik import ObservedIWEstimator
from deepem.evaluation.own_rows import impute_rows
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.evaluation.sharding import Shard
from deepem.inference.distributions import Q_DENSITY
from deepem.methods.base import Method
from deepem.methods.registry import METHODS, make_method, method_settings
from deepem.models.config import STOPPING_DEFAULTS, ModelConfig, make_model, table_settings
from deepem.models.likelihoods import make_likelihood
from deepem.models.lvm import DeepLatentModel
from deepem.settings import SettingError, check_values
from deepem.training.config import ConfigError, TrainConfig
from deepem.training.datacheck import check_data
from deepem.training.distributed import Parallel
from deepem.training.rng import seed_everything
from deepem.training.signals import StopRequest
from deepem.training.trainer import Trainer
from deepem.training.validation import HeldOutError, Validator, held_out_error, hold_out_cells
from deepem.workflows.own_data import RECORD_NAME, load_dataset_record, reload_file_dataset
from deepem.workflows.watch import validation_watch


def check_method(config: TrainConfig) -> dict[str, Any]:
    """The method's options of `config` checked against its constructor's declaration (names, types),
    with K filled in from the method's own default when the config leaves it out; ConfigError names
    the field. Nothing is built."""
    if not (isinstance(config.method, str) and config.method in METHODS):
        raise ConfigError(f"invalid method = {config.method!r}: must be one of {', '.join(sorted(METHODS))}")
    declared = method_settings(config.method)
    try:
        checked = check_values(declared, config.method_options, f"method {config.method!r}")
    except SettingError as err:
        raise ConfigError(f"invalid method_options = {config.method_options!r} for method "
                          f"{config.method!r}: {err}") from err
    return {"particles": declared["particles"].default, **checked}


def build_method(config: TrainConfig) -> Method:
    """The method of `config` (built once per run, in `assemble`), its option errors as ConfigError."""
    options = check_method(config)
    try:
        return make_method(config.method, **options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid method_options = {config.method_options!r} for method "
                          f"{config.method!r}: {err}") from err


def resolve(config: TrainConfig, check_dataset: bool = True) -> TrainConfig:
    """Check every field of `config` (names against the registries too, method options against the
    method's declaration) and return a copy with K filled in (the method's own default when the config
    leaves it out), so config.json and run names say the K that was trained. Builds nothing."""
    config.validate()
    dataset = config.dataset
    if check_dataset and is_file_dataset(dataset):
        # A file of one's own: recorded absolute (with its sha256, in data_file.json) so the run works
        # from any directory.
        if Path(dataset).expanduser().is_dir():
            raise ConfigError(f"invalid dataset = {dataset!r}: is a directory, not a file; give the path of a .csv, "
                              ".tsv, .npy or .npz file")
        if not Path(dataset).expanduser().is_file():
            raise ConfigError(f"invalid dataset = {dataset!r}: no such file; give the path of a .csv, .tsv, .npy "
                              "or .npz file, or a dataset name (`deepem list`)")
        dataset = str(Path(dataset).expanduser().resolve())
    elif check_dataset and not (isinstance(dataset, str) and dataset.strip().lower().replace("_", "-") in DATASETS):
        raise ConfigError(f"invalid dataset = {dataset!r}: unknown dataset; must be one of "
                          f"{', '.join(DATASETS)} (`deepem list` describes them), or the path of a .csv, .tsv, "
                          ".npy or .npz file")
    options = check_method(config)
    # The data location is recorded absolute, so the run folder works from any directory.
    data_dir = None if not config.data_dir else str(Path(config.data_dir).expanduser().resolve())
    resolved = dataclasses.replace(config, method_options=options, model=dataclasses.replace(config.model),
                                   data_dir=data_dir, dataset=dataset)
    resolved.validate(groups=tuple(METHODS[config.method].loss_groups))  # --optim names the method's groups
    return resolved


def run_config(settings: dict[str, Any], table_columns: int | None = None) -> TrainConfig:
    """A new run's TrainConfig from settings by name (TrainConfig fields, "model.FIELD", K as "particles",
    "method_options") over the declared defaults; for a table of `table_columns` columns, over the table
    defaults first (models/config.py `table_settings`: the MIWAE paper's UCI settings, a budget in updates and
    the held-out-cells stopping rule). The one place where the CLI and the scikit-learn estimators make a run's
    settings, so both train the same model. On a table, epochs given without max_iter is the budget (the
    default max_iter is dropped); given both, max_iter wins, as everywhere. The default budget's cap in epochs
    (max_epochs) goes with the default budget: a typed epochs or max_iter runs uncapped unless max_epochs is
    typed too. The rule's other defaults (patience,
    tol, valid_every_steps) apply only with a validation_fraction > 0 (the default is 0: off)."""
    typed = dict(settings)
    if table_columns is not None:
        defaults = table_settings(table_columns)
        if "particles" in typed.get("method_options", {}):  # K given as a method option wins over the default
            defaults.pop("particles")
        if "epochs" in typed and "max_iter" not in typed:  # a budget in epochs asked for
            defaults.pop("max_iter")
        if ("epochs" in typed or "max_iter" in typed) and "max_epochs" not in typed:  # a budget typed: no cap
            defaults.pop("max_epochs")
        if not typed.get("validation_fraction", defaults["validation_fraction"]):
            for name in STOPPING_DEFAULTS:
                defaults.pop(name)
        typed = {**defaults, **typed}
    model = ModelConfig(**{k.removeprefix("model."): v for k, v in typed.items() if k.startswith("model.")})
    options = {**typed.pop("method_options", {}), **({"particles": typed.pop("particles")}
                                                      if "particles" in typed else {})}
    return TrainConfig(model=model, method_options=options,
                       **{k: v for k, v in typed.items() if not k.startswith("model.")})


def build_model(config: TrainConfig, data: DataSplits, train_mean: Tensor | None = None) -> DeepLatentModel:
    """The model of `config` for `data`, output bias at the training mean (Burda et al. 2015): `train_mean`
    when given (the mean of the cells training sees), else the data's."""
    if config.model.likelihood is None:
        config.model.likelihood = data.likelihood
    model = make_model(config.model, data.data_dim, data.train_mean() if train_mean is None else train_mean)
    return model.to(config.device, config.torch_dtype)


def iw_validator(valid: Tensor, particles: int, seed: int, mask: Tensor | None = None,
                 shard: Shard | None = None, proposal: str = "zero-filled") -> Validator:
    """The IWAE-K bound on `valid`, drawn from a generator seeded by `seed` (never the training RNG):
    of log p(x) (estimator iw), or on incomplete data (a mask) of log p(x_o) (estimator iw-observed, q
    fed the `proposal` input); shard: in a data-parallel job the ranks share its batches (the bound is
    the same)."""
    estimator = IWEstimator(particles=particles) if mask is None else \
        ObservedIWEstimator(particles=particles, proposal=proposal)

    def validate(model: nn.Module) -> LogLikelihoodEstimate:
        return estimate(estimator, model, valid, mask, seed=seed, shard=shard)

    return validate


def held_out_validator(train: Tensor, train_mask: Tensor, held_out: Tensor, particles: int, seed: int,
                       proposal: str) -> Validator:
    """Minus the RMSE of the model's imputation (self-normalised IS mean, K = `particles`, row-wise draws
    of `seed`: evaluation/own_rows.py) of the `held_out` cells of `train`, the rows seen with `train_mask`
    (which hides those cells); only the rows with a held-out cell are imputed."""
    rows = held_out.any(dim=1)
    x, seen, hidden = train[rows], train_mask[rows], held_out[rows]

    def validate(model: nn.Module) -> HeldOutError:
        imputed = impute_rows(model, x, seen, particles=particles, proposal=proposal, seed=seed).imputed
        return held_out_error(imputed, x, hidden)

    return validate


@dataclass
class Assembled:
    """What a TrainConfig builds."""

    config: TrainConfig  # resolved (K filled in)
    data: DataSplits
    model: DeepLatentModel
    method: Method
    train: Tensor  # the training rows used (train_limit applied)
    validate: Validator | None
    train_mask: Tensor | None = None  # their observed-data mask (None: complete)


def run_data(config: TrainConfig, data: DataSplits | None = None, recorded: bool = False,
             run_dir: str | Path | None = None) -> tuple[DataSplits, CorruptedData | None]:
    """The data a run trains on: the dataset (or `data`), corrupted by `config.missing` when it is set
    (masks drawn once from `config.missing_seed`, so a resumed or re-evaluated run sees the same ones),
    and the corrupted data with the complete copy beside them (None for complete data). recorded=True:
    the config comes from a run folder, whose data may have moved ($DEEPEM_DATA is searched too).
    A file dataset (config.dataset a .csv/.tsv/.npy/.npz path) comes with its own masks, --missing added
    (no complete copy: None); with `run_dir` holding its record it is rebuilt from it, a changed file refused."""
    if data is None and is_file_dataset(config.dataset):
        return file_dataset(config, run_dir).splits, None
    load = load_recorded_dataset if recorded else load_dataset
    data = data if data is not None else load(config.dataset, config.data_dir)
    if config.missing is None:
        return data, None
    corrupted = make_incomplete(data, config.missing, config.missing_seed)
    return corrupted.splits, corrupted


def is_file_dataset(dataset: str) -> bool:
    """Whether a config's dataset names a file of one's own (by its suffix) rather than a registered dataset."""
    return isinstance(dataset, str) and Path(dataset).suffix.lower() in SUFFIXES


def file_dataset(config: TrainConfig, run_dir: str | Path | None = None) -> FileDataset:
    """The file dataset of `config`: from the record in `run_dir` when there is one (the file's sha256
    checked), else read anew with the run's seed, split, header and extra missingness."""
    if run_dir is not None and (Path(run_dir) / RECORD_NAME).is_file():
        return reload_file_dataset(load_dataset_record(run_dir))
    return load_file_dataset(config.dataset, seed=config.seed, fractions=config.split, header=config.header,
                             missing=config.missing, missing_seed=config.missing_seed)


def assemble(config: TrainConfig, data: DataSplits | None = None, recorded: bool = False,
             shard: Shard | None = None, run_dir: str | Path | None = None) -> Assembled:
    """Data, model, method and validator of `config`; `data` given directly skips the dataset registry
    (tests, library use). Everything is checked before anything is written."""
    config = resolve(config, check_dataset=data is None)
    data, _ = run_data(config, data, recorded, run_dir if recorded else None)
    train = data.train if config.train_limit is None else data.train[: config.train_limit]
    valid = data.valid if config.valid_limit is None else data.valid[: config.valid_limit]
    train_mask, valid_mask = (None if m is None else m[: len(x)] for m, x in
                              ((data.train_mask, train), (data.valid_mask, valid)))
    likelihood = make_likelihood(config.model.likelihood or data.likelihood)
    check_data(data, likelihood.check_data,
               need_valid=bool(config.valid_every or config.valid_every_steps) and not config.validation_fraction)
    held_out = None
    if config.validation_fraction:
        # held-out cells of the training rows: hidden from training by a mask of the seed alone (its own
        # generator: the global RNG below is untouched), and from the output bias's initial mean too
        observed = train_mask if train_mask is not None else torch.ones(train.shape, dtype=torch.bool)
        train_mask, held_out = hold_out_cells(observed, config.validation_fraction, config.seed, config.valid_limit)
    # The seed is set before the model is built: its initial weights are part of the run.
    seed_everything(config.seed)
    model = build_model(config, data, None if held_out is None else observed_mean(train, train_mask))
    method = build_method(config)
    # The IW validation bound needs log q: a model whose q has none (implicit) is validated by nobody
    # here; evaluate it with AIS (build_trainer says so).
    has_density = Q_DENSITY in model.capabilities()
    # Incomplete data: log p(x_o) with q fed the zero-filled data (the numbers runs have recorded so far;
    # iw_validator's proposal="completed" is miss-IWEM's own proposal).
    validates = bool(config.valid_every or config.valid_every_steps) and has_density
    validate = iw_validator(valid, config.valid_particles, config.seed, valid_mask, shard) if validates else None
    if held_out is not None:  # validated on the held-out cells instead
        proposal = getattr(METHODS[config.method], "imputation_proposal", "zero-filled")
        validate = held_out_validator(train, train_mask, held_out, config.valid_particles, config.seed,
                                      proposal) if validates else None
    return Assembled(config, data, model, method, train, validate, train_mask)


def build_trainer(config: TrainConfig, run_dir: str | Path | None, data: DataSplits | None = None,
                  log: Callable[[str], None] = print, progress: bool = True,
                  batch_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
                  stop: StopRequest | None = None, recorded: bool = False,
                  parallel: Parallel | None = None) -> Trainer:
    """The Trainer of a TrainConfig (the CLI's path, and resume's: config.json is a TrainConfig; then
    recorded=True, as its data may have moved; the scikit-learn estimators' with run_dir None: in memory)."""
    shard = None if parallel is None else Shard(parallel.rank, parallel.world, parallel.gather_cat)
    a = assemble(config, data, recorded, shard, run_dir)
    return Trainer(a.model, a.method, a.train, run_dir, a.config, validate=a.validate, train_mask=a.train_mask,
                   dynamic_binarization=a.data.dynamic_binarization, log=log, progress=progress,
                   batch_hook=batch_hook, stop=stop, parallel=parallel,
                   watch=validation_watch(a.data, a.config) if a.config.tensorboard else None,
                   data_transform=benchmark_transform(a.config, a.data))


def benchmark_transform(config: TrainConfig, data: DataSplits) -> dict[str, Any] | None:
    """For a run on a registered dataset, the data transform its checkpoints record (the fields of
    `trained_model.DataTransform`: columns 1..D, no header, no rescaling, the image shape, the likelihood),
    so that `deepem.load` rebuilds the model without the dataset; None for other data (a file of one's own
    has its dataset record, rows given in Python have none to load)."""
    if is_file_dataset(config.dataset) or str(config.dataset).strip().lower().replace("_", "-") not in DATASETS:
        return None
    return {"columns": [str(j + 1) for j in range(data.data_dim)], "header": False, "standardization": None,
            "image_shape": None if data.image_shape is None else list(data.image_shape),
            "likelihood": config.model.likelihood or data.likelihood, "dataset": config.dataset, "benchmark": True}
