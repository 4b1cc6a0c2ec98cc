"""A trained model that stands on its own: `TrainedModel` holds the network, the data transform (columns,
header, standardisation, image shape, likelihood, dtype), the method and its settings and the step of its
parameters, and needs no training data. `deepem.load(RUN)` returns one; `deepem impute / score / sample /
evaluate --input` use one; a scikit-learn estimator's fitted `model_` is one.

A run folder holds config.json, its checkpoints and, for a file of one's own, data_file.json (columns, header,
standardisation): `load_model` builds the TrainedModel from those, so the file the run trained on is never
read, and every run folder written so far loads. A run on a benchmark dataset has its transform (dimension,
likelihood, image shape) in its checkpoints (`data_transform`, written since deepem records it), so it too
loads without its data; an older run's comes from the dataset, which is then loaded.

`TrainedModel.save(PATH)` writes it as one file (`MODEL_FORMAT`), atomically with a sha256 file beside it;
the file holds tensors, numbers, strings, lists and dicts only, so `torch.load(PATH, weights_only=True)`
reads it, and `load_model(PATH)` rebuilds the TrainedModel from it.

Values given to the methods are on the data's own scale (the file's units; NaN = missing), and so are the
results: the standardisation is applied and undone here, and scores include its Jacobian."""

from __future__ import annotations

import io
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deepem.data.own_dataset import Standardization
from deepem.data.registry import DATASETS, load_recorded_dataset
from deepem.data.tables import SUFFIXES, refuse_non_numeric
from deepem.errors import InvalidInputError, UserError
from deepem.evaluation.driver import Estimator
from deepem.evaluation.estimators import make_estimator
from deepem.evaluation.evaluate import evaluate_model
from deepem.evaluation.imputation import ImputationResult
from deepem.evaluation.own_rows import Progress, impute_rows, score_rows
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.files import atomic_write_bytes, checksum_path, sha256_bytes
from deepem.methods.base import METHODS
from deepem.models.config import make_model
from deepem.models.likelihoods import check_rows
from deepem.models.lvm import DeepLatentModel
from deepem.training.checkpoint_file import load_latest_good
from deepem.training.config import TrainConfig
from deepem.training.run import RunFolder, RunFolderError
from deepem.workflows.memory import NUMBER_BYTES, require_memory
from deepem.workflows.own_data import RECORD_NAME, load_dataset_record

#: the format tag of a saved TrainedModel file
MODEL_FORMAT = "deepem-model-1"
#: a TrainedModel saved inside a run folder (by a scikit-learn estimator given a run_dir, whose data transform
#: no dataset record holds); used while it holds the parameters the newest checkpoint would give
MODEL_FILE = "model.pt"


class ModelFileError(UserError, ValueError):
    """A saved model file that is not one, is damaged, or does not match its checksum."""


class CountTypeError(UserError, TypeError):
    """A number of samples or draws given as other than a whole number."""


def whole_count(value: Any, name: str, minimum: int = 1) -> int:
    """`value` as an int, refused in one line when it is not a whole number >= `minimum` (a string "5", 2.5)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CountTypeError(f"{name} must be a whole number >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def method_proposal(method: str) -> str:
    """The imputation proposal a method trains q for: its class's `imputation_proposal` ("zero-filled" for a
    method this process has not registered)."""
    cls = METHODS.get(method)
    return getattr(cls, "imputation_proposal", "zero-filled") if cls is not None else "zero-filled"


def finite_rows(values: np.ndarray, what: str) -> np.ndarray:
    """`values` ((..., N, D) answers for N rows), refused when one is not finite: the rows were in the model's
    support, yet one lies so far outside the training data (1e30 in a column of ones) that the arithmetic
    overflows; a NaN or -inf answer would otherwise pass as a number."""
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad.reshape(-1, *bad.shape[-2:]).any(axis=(0, 2)))[0])
        raise InvalidInputError(f"the {what} of row {row} (0-based) is not finite: its values lie too far outside "
                                "those the model was trained on (rescale them as the training data were, or drop "
                                "the row)")
    return values


@dataclass(frozen=True)
class DataTransform:
    """Between the data's own units and the model's: columns (names, or "1".."D"), whether the training file
    had a header, the per-column standardisation (None: the model sees the values as given), the image shape
    (None: a table), the likelihood, and the dataset trained on (a file path or a benchmark name)."""

    columns: list[str]
    header: bool
    standardization: Standardization | None
    image_shape: tuple[int, int] | None
    likelihood: str
    dataset: str
    benchmark: bool = False

    def record(self) -> dict[str, Any]:
        """The dataset record's fields that reading and writing rows need (workflows/own_data.py)."""
        return {"columns": list(self.columns), "header": self.header,
                "standardization": None if self.standardization is None else self.standardization.to_dict(),
                **({"benchmark": self.dataset} if self.benchmark else {})}

    def to_dict(self) -> dict[str, Any]:
        return {**self.record(), "image_shape": None if self.image_shape is None else list(self.image_shape),
                "likelihood": self.likelihood, "dataset": self.dataset, "benchmark": self.benchmark}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataTransform:
        shape = d.get("image_shape")
        benchmark = d.get("benchmark")
        return cls(list(d["columns"]), bool(d["header"]), Standardization.from_dict(d.get("standardization")),
                   None if shape is None else (int(shape[0]), int(shape[1])), str(d["likelihood"]),
                   str(d.get("dataset", benchmark or "")), bool(benchmark))


@dataclass
class TrainedModel:
    """A trained deep latent variable model and everything it needs to be used without its training data.

    model: the network, in eval mode; transform: the data's columns and scale; method, method_options: how
    it was trained; config: the run's full configuration (config.json); step: the training step of its
    parameters; imputation_proposal: the input q(z|x) was trained on ("zero-filled", "completed"), the
    default of `impute` and `score`; source: where it was loaded from."""

    model: DeepLatentModel
    transform: DataTransform
    method: str
    method_options: dict[str, Any]
    config: dict[str, Any]
    step: int
    imputation_proposal: str = "zero-filled"
    source: str = ""
    checkpoint: str | None = field(default=None, compare=False)  # the checkpoint file's name, from a run

    @property
    def data_dim(self) -> int:
        return self.model.data_dim

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # rows in, rows out ---------------------------------------------------------------------------
    def model_rows(self, x: Any, mask: Any = None) -> tuple[np.ndarray, Tensor, Tensor]:
        """(x as float64 on its own scale, x in model units, mask): `x` an (N, D) array or tensor with NaN
        where missing (or `mask`, True = observed)."""
        if not isinstance(x, Tensor):
            refuse_non_numeric(x, "x")
        values = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.data_dim:
            raise InvalidInputError(f"rows must be shaped (N, {self.data_dim}) (the model's columns), got "
                                    f"{values.shape}")
        observed = ~np.isnan(values) if mask is None else np.asarray(mask, dtype=bool)
        scale = self.transform.standardization
        scaled = torch.from_numpy(values if scale is None else scale.apply(values))
        observed = torch.from_numpy(observed.copy())
        check_rows(self.model.likelihood, scaled, observed)  # (a file's rows were checked by their own names)
        return values, scaled, observed

    def check_support(self, x: Any, mask: Any = None, row_name: Callable[[int], str] = lambda r: f"row {r}",
                      column_name: Callable[[int], str] = lambda j: f"column {j}", source: str = "") -> None:
        """Refuse rows holding a value the model's likelihood cannot give (a Bernoulli model and grey levels),
        naming the first by `row_name` and `column_name` (models.likelihoods.check_rows)."""
        refuse_non_numeric(x, "x")
        values = np.asarray(x, dtype=np.float64)
        observed = ~np.isnan(values) if mask is None else np.asarray(mask, dtype=bool)
        scale = self.transform.standardization
        check_rows(self.model.likelihood, torch.from_numpy(values if scale is None else scale.apply(values)),
                   torch.from_numpy(observed.copy()), row_name, column_name, source)

    def own_scale(self, values: Tensor, given: np.ndarray, mask: Tensor) -> np.ndarray:
        """Model-unit values back on the data's scale, observed cells exactly as given."""
        scale = self.transform.standardization
        out = values.detach().cpu().double().numpy()
        out = out if scale is None else scale.invert(out)
        observed = mask.numpy()
        out[observed] = given[observed]
        return out

    def imputation(self, x: Any, mask: Any = None, particles: int = 1000, draws: int = 0, seed: int = 0,
                   proposal: str | None = None, batch_size: int = 100, progress: Progress | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None, ImputationResult]:
        """(imputed rows, (draws, N, D) multiple imputations or None, the ImputationResult in model units)."""
        given, rows, observed = self.model_rows(x, mask)
        if draws:
            self.check_draws_memory(draws, *given.shape)
        result = impute_rows(self.model, rows, observed, particles, draws, proposal or self.imputation_proposal,
                             seed, batch_size, progress=progress)
        drawn = None if result.draws is None else np.stack([self.own_scale(d, given, observed)
                                                              for d in result.draws])
        return self.own_scale(result.imputed, given, observed), drawn, result

    def check_draws_memory(self, draws: int, n_rows: int, n_columns: int) -> None:
        """Refuse `draws` imputations of n_rows rows whose results would not fit in memory (held three times
        over: the model's, on the data's scale, and stacked)."""
        require_memory(3 * draws * n_rows * n_columns * NUMBER_BYTES,
                       f"{draws} multiple imputations of {n_rows} rows of {n_columns} columns",
                       "ask for fewer draws (--draws, n_draws), or impute the rows a part at a time")

    def impute(self, x: Any, particles: int = 1000, seed: int = 0, proposal: str | None = None,
               batch_size: int = 100) -> np.ndarray:
        """x with its NaN cells filled by the self-normalised importance-sampling estimate of E[x_m | x_o]
        (K = `particles`, q fed the `proposal` input; None: the method's own); observed cells as given."""
        return finite_rows(self.imputation(x, None, particles, 0, seed, proposal, batch_size)[0], "imputation")

    def impute_draws(self, x: Any, n_draws: int = 5, particles: int = 1000, seed: int = 0,
                     proposal: str | None = None, batch_size: int = 100) -> np.ndarray:
        """(n_draws, N, D) multiple imputations of x by sampling importance resampling."""
        whole_count(n_draws, "n_draws")
        return finite_rows(self.imputation(x, None, particles, n_draws, seed, proposal, batch_size)[1], "draw")

    def score_estimate(self, x: Any, mask: Any = None, particles: int = 1000, seed: int = 0,
                       proposal: str | None = None, batch_size: int = 100, progress: Progress | None = None
                       ) -> tuple[np.ndarray, LogLikelihoodEstimate]:
        """(per-row log-densities on the data's own scale, the estimate in model units behind them)."""
        _, rows, observed = self.model_rows(x, mask)
        complete = bool(observed.all())
        estimate = score_rows(self.model, rows, None if complete else observed, particles,
                              proposal or self.imputation_proposal, seed, batch_size, progress=progress)
        per_row = estimate.per_point.numpy()
        scale = self.transform.standardization
        return (per_row if scale is None else per_row + scale.log_jacobian(observed.numpy())), estimate

    def score(self, x: Any, particles: int = 1000, seed: int = 0, proposal: str | None = None,
              batch_size: int = 100) -> np.ndarray:
        """Each row's importance-weighted bound (K = `particles`) of log p(x), or of log p(x_o) (the observed
        cells) for a row with NaN, as a density of the rows on their own scale."""
        return finite_rows(self.score_estimate(x, None, particles, seed, proposal, batch_size)[0][:, None],
                           "log-likelihood")[:, 0]

    @torch.no_grad()
    def sample(self, n: int = 64, seed: int = 0, mean: bool = False) -> np.ndarray:
        """(n, D) draws x ~ p(x) = ∫ p(x|z) p(z) dz on the data's own scale; mean=True: the likelihood's mean
        E[x|z] of each z instead of a draw (the clean images of a sample grid)."""
        n = whole_count(n, "the number of samples n")
        model = self.config.get("model", {})
        widths = sum(model.get("hidden") or []) + int(model.get("latent_dim") or 0)  # what each draw passes through
        require_memory(n * (3 * self.data_dim + widths) * NUMBER_BYTES, f"{n} samples of {self.data_dim} columns",
                       "ask for fewer (--n, n), or draw them a part at a time with different seeds")
        drawn = self.model.sample(n, generator=torch.Generator(device=self.model_device).manual_seed(seed),
                                  mean=mean)
        out = drawn.detach().cpu().double().numpy()
        scale = self.transform.standardization
        return out if scale is None else scale.invert(out)

    @property
    def model_device(self) -> torch.device:
        return next(self.model.parameters()).device

    def evaluate(self, x: Any, estimator: str | Estimator = "iw", seed: int = 0, batch_size: int = 100,
                 progress: bool = False, mask: Any = None, **settings: Any) -> tuple[dict[str, Any], np.ndarray]:
        """A log-likelihood estimate of the rows of x and the model's encoder diagnostics on them, as the
        record `deepem evaluate` writes; log-likelihoods on the data's own scale. estimator: a registered
        name with its `settings`, or an estimator object; rows with a NaN cell need one of log p(x_o) (the
        name "iw" then means "iw-observed"). Returns (record, per-row values)."""
        _, rows, observed = self.model_rows(x, mask)
        complete = bool(observed.all())
        if isinstance(estimator, str):
            estimator = make_estimator("iw-observed" if estimator == "iw" and not complete else estimator, **settings)
        est = estimator
        if not complete and not est.observed_data:
            raise InvalidInputError(f"rows with missing cells need an estimator of log p(x_o) (iw-observed); the "
                                    f"{est.name} estimator needs complete rows")
        rows = rows.to(self.model_device, self.dtype)
        mask = None if complete and not est.observed_data else observed.to(self.model_device)
        record, estimate = evaluate_model(self.model, rows, est, seed, batch_size, progress, mask=mask)
        per_row = estimate.per_point.numpy()
        scale = self.transform.standardization
        if scale is not None:
            per_row = per_row + scale.log_jacobian(observed.numpy())
            record.update(LogLikelihoodEstimate(torch.from_numpy(per_row), estimate.estimator,
                                                estimate.settings).summary())
        record.update(estimator_name=est.name, units="data's own scale" if scale is not None else "as given",
                      method=self.method, step=self.step, dtype=str(self.dtype).removeprefix("torch."))
        return record, per_row

    # the file -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything as tensors, numbers, strings, lists and dicts (what torch.load(weights_only=True) reads)."""
        return {"format": MODEL_FORMAT, "config": self.config, "data_dim": self.data_dim,
                "transform": self.transform.to_dict(), "method": self.method,
                "method_options": self.method_options, "step": self.step,
                "imputation_proposal": self.imputation_proposal,
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    def save(self, path: str | Path) -> Path:
        """Write the model to `path` (e.g. model.pt) atomically, its sha256 in PATH.sha256 beside it."""
        buffer = io.BytesIO()
        torch.save(self.state(), buffer)
        payload = buffer.getvalue()
        path = Path(path)
        atomic_write_bytes(path, payload)
        atomic_write_bytes(checksum_path(path), f"{sha256_bytes(payload)}  {path.name}\n".encode())
        return path

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str = "cpu", source: str = "") -> TrainedModel:
        config = TrainConfig.from_dict(state["config"])
        transform = DataTransform.from_dict(state["transform"])
        model = build_model(config, int(state["data_dim"]), transform.likelihood, state["model"], device)
        return cls(model, transform, state["method"], dict(state["method_options"]), state["config"],
                   int(state["step"]), state.get("imputation_proposal", method_proposal(state["method"])), source)


def build_model(config: TrainConfig, data_dim: int, likelihood: str, parameters: dict[str, Tensor],
                device: str = "cpu") -> DeepLatentModel:
    """The network of `config` with `parameters`, in eval mode; building it draws no number from the
    global generators (its initial weights are replaced at once)."""
    if config.model.likelihood is None:
        config.model.likelihood = likelihood
    with torch.random.fork_rng(devices=[]):
        model = make_model(config.model, data_dim)
    model.load_state_dict(parameters)
    return model.to(device, config.torch_dtype).eval()


def load_model_file(path: str | Path, device: str = "cpu") -> TrainedModel:
    """A TrainedModel saved by `TrainedModel.save`, its checksum checked when the sha256 file is beside it."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"cannot read the model file {path}: {err.strerror or err}") from err
    sidecar = checksum_path(path)
    if sidecar.is_file() and sidecar.read_text().split()[0] != sha256_bytes(payload):
        raise ModelFileError(f"{path} does not match its checksum file {sidecar.name}: it is damaged; save it again")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # (torch raises many kinds for a file that is not one of its own)
        raise ModelFileError(f"{path} is not a deepem model file: give a run folder (what `deepem train` wrote) "
                             "or a file written by TrainedModel.save") from err
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a deepem model file (format {MODEL_FORMAT})")
    return TrainedModel.from_state(state, device, str(path))


def load_model(source: str | Path, device: str = "cpu", warn: Any = None, data_dir: str | None = None
               ) -> TrainedModel:
    """The TrainedModel of a run folder (the newest good checkpoint's parameters, or under early stopping
    its best validation's) or of a saved model file. A run on a file of one's own is loaded without the
    file, and so is one on a benchmark dataset whose checkpoints record the data transform; an older one
    loads the dataset (from `data_dir` when given) for its dimension and likelihood."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    source = Path(source)
    if source.is_file():
        return load_model_file(source, device)
    run = RunFolder(source)
    run.require_run()
    config = TrainConfig.from_dict(run.read_config())
    found = load_latest_good(run.checkpoints, map_location="cpu", warn=warn or _quiet, move_aside=False)
    if found is None:
        written = sorted(p.name for p in run.checkpoints.glob("*.pt")) if run.checkpoints.is_dir() else []
        if written:  # (none of them reads back: not "train it first", the run did train)
            raise RunFolderError(f"run {run.root}: none of its {len(written)} checkpoints can be read (damaged or "
                                 f"truncated, newest {written[-1]}); restore the folder from a copy, or train the run "
                                 "again with --force")
        raise RunFolderError(f"run {run.root} has no usable checkpoint yet; train it first (or --resume it)")
    path, ckpt = found
    params = ckpt.get("best", ckpt)  # early stopping: the best validation's parameters
    step = parameters_step(run, ckpt)
    if (source / MODEL_FILE).is_file():
        saved = load_model_file(source / MODEL_FILE, device)
        if saved.step == step:
            saved.checkpoint = path.name
            return saved
    if data_dir:
        config.data_dir = data_dir
    transform = run_transform(source, config, ckpt.get("data_dim"), ckpt.get("data_transform"))
    model = build_model(config, len(transform.columns), transform.likelihood, params["model"], device)
    return TrainedModel(model, transform, config.method, dict(config.method_options), config.to_dict(), step,
                        method_proposal(config.method), str(source), path.name)


def run_transform(run_dir: str | Path, config: TrainConfig, data_dim: int | None = None,
                  recorded: dict[str, Any] | None = None) -> DataTransform:
    """The data transform of a run: from its dataset record (a file of one's own); for a benchmark dataset,
    the one its checkpoint `recorded` (checkpoints written since deepem recorded it), else from the dataset
    as the run's data hold it (columns 1..D, no header, no rescaling; loaded for its image shape); for data
    given to the Trainer directly, from the checkpoint's data dimension and the recorded likelihood (columns
    1..D, no rescaling)."""
    if (Path(run_dir) / RECORD_NAME).is_file():
        record = load_dataset_record(run_dir)
        shape = record.get("image_shape")
        return DataTransform(list(record["columns"]), bool(record["header"]),
                             Standardization.from_dict(record.get("standardization")),
                             None if shape is None else (int(shape[0]), int(shape[1])),
                             record.get("likelihood") or config.model.likelihood or "gaussian", record["path"])
    if Path(str(config.dataset)).suffix.lower() in SUFFIXES:  # a file of one's own, and its record is gone
        raise RunFolderError(f"run {run_dir} was trained on {config.dataset}, and its record of that file's columns "
                             f"and scale ({RECORD_NAME}) is missing; put it back from a copy of the run folder, or "
                             "train the run again")
    if recorded is not None:
        return DataTransform.from_dict(recorded)
    columns = None if data_dim is None else [str(j + 1) for j in range(data_dim)]
    info = DATASETS.get(str(config.dataset).strip().lower().replace("_", "-"))
    if columns is not None and config.model.likelihood and (info is None or info.dim != data_dim):
        return DataTransform(columns, False, None, None, config.model.likelihood, config.dataset)
    data = load_recorded_dataset(config.dataset, config.data_dir)  # (the data may have moved)
    return DataTransform([str(j + 1) for j in range(data.data_dim)], False, None, data.image_shape,
                         config.model.likelihood or data.likelihood, config.dataset, benchmark=True)


def parameters_step(run: RunFolder, ckpt: dict[str, Any]) -> int:
    """The step whose parameters `ckpt` hands to evaluation: its best validation's (early stopping) or its
    own. A checkpoint written before the best copy recorded its step: the step of the validation record
    of the best epoch in metrics.jsonl."""
    newest = int(ckpt["train_state"]["step"])
    if "best" not in ckpt:
        return newest
    if "step" in ckpt["best"]:
        return int(ckpt["best"]["step"])
    best_epoch = ckpt["train_state"].get("best_epoch")
    steps = [r["step"] for r in run.read_metrics() if r.get("kind") == "valid" and r.get("epoch") == best_epoch]
    return int(steps[-1]) if steps else newest


def _quiet(message: str) -> None:
    """Warnings are for the command that trains or resumes the run."""
