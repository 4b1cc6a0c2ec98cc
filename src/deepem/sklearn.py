"""deepem as scikit-learn estimators: `DeepImputer` (fit / transform: NaN cells filled) and
`DeepDensityEstimator` (fit / score_samples / score: per-row log p(x), or log p(x_o) for rows with NaN).

    from deepem.sklearn import DeepImputer
    filled = DeepImputer(method="miwae", random_state=0).fit_transform(table_with_nans)

Both build and train their model through the same function as `deepem train --dataset FILE.csv`
(`workflows.assembly.run_config` and `build_trainer`), with the same table defaults (models/config.py
`TABLE_DEFAULTS`: the MIWAE paper's UCI settings) for every setting left at None, in memory (no run folder
unless `run_dir` names one), on the columns standardised with their observed entries. The fitted `model_`
is a `TrainedModel` (the object `deepem.load` returns; it pickles, and `model_.save(PATH)` writes it as a
file); outputs are on the input's own scale (scores include the Jacobian of the standardisation, so they
are log-densities of the rows as given). At the same settings and seed the CLI's run and the estimator
give the same model bit for bit.

Monte Carlo estimates are row-wise (evaluation/own_rows.py): a row's imputation, draws and score are
functions of the model, the row, the seed and K alone, whatever other rows come with it. transform and
score_samples use the fitted `seed_` (deterministic given random_state); `sample` draws a new seed per
call from the estimator's random stream unless given one.

The budget is in updates: `max_iter` (default 2000 optimiser steps, whatever the number of rows), cut
by default to `max_epochs` = 200 passes over the rows on a small table (benchmarks/budget_sweep.py: longer
fits made the draws too narrow); `epochs` given without max_iter is the budget instead; given both,
max_iter wins; a typed budget has no cap unless max_epochs is given. The stopping rule is off by default
(the whole budget runs); a validation_fraction > 0 turns it on, with
n_iter_no_change 10, tol 0, valid_every_steps 50 unless given (the table defaults, models/config.py, chosen
by benchmarks/stopping_sweep.py: on its tables the fixed budget imputed better than the rule). Every
parameter left at None takes the table default, the value `deepem train --dataset FILE.csv` uses where its
flag is not typed. The rule: a fraction of the
observed cells of X is hidden from training by a mask of the seed alone; every `valid_every_steps`
updates the model imputes them (K = 100, the CLI's --valid-particles) and training stops when their RMSE
(standardised units) has not improved by more than `tol` for `n_iter_no_change` checks, or after
`max_iter` updates. DeepDensityEstimator stops by the same rule: the imputation error of held-out cells
is its held-out criterion too (a table has no validation rows in fit). The parameters
of the best check are kept; the held-out cells are not given back (no refit: a second training would
need a length of its own, and the model already trains on every row). The same rule as `deepem train
--validation-fraction F --valid-every-steps N --patience P --tol T --max-iter M`, bit for bit.

Missing values are the cells equal to `missing_values` (NaN by default; with a number such as -1, NaN
is refused, as scikit-learn's imputers do). A column with no observed cell in fit: DeepImputer with
keep_empty_features=False drops it from its output with a warning naming it, with True keeps it
filled with 0 (SimpleImputer's rules for its mean strategy); DeepDensityEstimator refuses it, as
`deepem train` refuses such a column in a file. The output has the input's float dtype (float32 in,
float32 out; integers come back as float64).

scikit-learn is an optional dependency: `pip install deepem[sklearn]`."""

from __future__ import annotations

import math
import numbers
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

try:
    from sklearn.base import BaseEstimator, DensityMixin, TransformerMixin
    from sklearn.impute import MissingIndicator
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError("deepem.sklearn needs scikit-learn 1.6 or later: pip install 'deepem[sklearn]'") from err

from deepem.data.base import DataSplits
from deepem.data.own_dataset import Standardization
from deepem.data.tables import check_finite_table, refuse_non_numeric
from deepem.models.config import STOPPING_DEFAULTS
from deepem.training.rng import capture_rng_state, restore_rng_state
from deepem.workflows.assembly import build_trainer, run_config
from deepem.workflows.trained_model import MODEL_FILE, DataTransform, TrainedModel, method_proposal

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DeepDensityEstimator", "DeepImputer"]

#: float32 stays float32; anything else becomes float64
_DTYPES = (np.float64, np.float32)
_SEEDS = np.iinfo(np.int32).max


def _is_nan(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isnan(value)


class _DeepLatentEstimator(BaseEstimator):
    """What both estimators share: the settings, `fit`, and the data in model units."""

    def __init__(self, method: str = "miwae", particles: int | None = None, epochs: int | None = None,
                 max_iter: int | None = None, max_epochs: int | None = None, batch_size: int | None = None,
                 latent_dim: int | None = None,
                 hidden: tuple[int, ...] | None = None, activation: str | None = None, lr: float | None = None,
                 validation_fraction: float | None = None, n_iter_no_change: int | None = None,
                 tol: float | None = None, valid_every_steps: int | None = None, eval_particles: int = 1000,
                 proposal: str | None = None,
                 method_options: dict[str, Any] | None = None, missing_values: float = np.nan,
                 random_state: int | np.random.RandomState | None = None, verbose: bool = False,
                 run_dir: str | None = None) -> None:
        self.method = method
        self.particles = particles
        self.epochs = epochs
        self.max_iter = max_iter
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.lr = lr
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.valid_every_steps = valid_every_steps
        self.eval_particles = eval_particles
        self.proposal = proposal
        self.method_options = method_options
        self.missing_values = missing_values
        self.random_state = random_state
        self.verbose = verbose
        self.run_dir = run_dir

    def __sklearn_tags__(self):  # noqa: ANN204 - the Tags class moved between scikit-learn versions
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = _is_nan(self.missing_values)
        return tags

    def settings(self, seed: int) -> dict[str, Any]:
        """The run settings by name that this estimator sets; the table defaults fill in the rest."""
        def number(value: Any, kind: type) -> Any:
            return None if value is None else kind(value)

        # None: the table default (run_config), as a flag not typed on the command line
        given = {"method": self.method, "particles": self.particles, "epochs": self.epochs,
                 "max_iter": self.max_iter, "max_epochs": self.max_epochs, "batch_size": self.batch_size,
                 "model.latent_dim": self.latent_dim,
                 "model.hidden": None if self.hidden is None else [int(h) for h in self.hidden],
                 "model.activation": self.activation, "lr": self.lr,
                 "method_options": None if self.method_options is None else dict(self.method_options),
                 "validation_fraction": number(self.validation_fraction, float),
                 "patience": self.n_iter_no_change, "tol": number(self.tol, float),
                 "valid_every_steps": self.valid_every_steps}
        fraction = STOPPING_DEFAULTS["validation_fraction"] if self.validation_fraction is None \
            else self.validation_fraction
        if not fraction:  # the rule off: its settings unused (as the command line's flags are without it)
            given.update(patience=None, tol=None, valid_every_steps=None)
        return {"dataset": "scikit-learn", "seed": seed, "valid_every": 0, "split": "1,0,0",
                **{k: v for k, v in given.items() if v is not None}}

    def _check(self, X: Any, reset: bool) -> np.ndarray:  # noqa: N803 - scikit-learn's name
        """X as float32 or float64 rows; NaN allowed only when it is the missing-value marker. Text is refused
        in one line (numpy's error would come from deep inside scikit-learn); other objects as scikit-learn does."""
        if not hasattr(X, "toarray"):  # (a sparse matrix: scikit-learn's own refusal)
            refuse_non_numeric(X, "X", text_only=True)
        X = validate_data(self, X, reset=reset, dtype=_DTYPES, ensure_min_samples=2 if reset else 1,  # noqa: N806
                          ensure_all_finite="allow-nan" if _is_nan(self.missing_values) else True)
        check_finite_table(X)  # finite, yet beyond float32 (1e300): the model would compute inf
        return X

    def _missing(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return np.isnan(X) if _is_nan(self.missing_values) else X == self.missing_values

    def _empty_columns(self, empty: np.ndarray) -> None:
        """What a column with no observed cell does (DeepDensityEstimator: refused)."""
        raise ValueError(f"features {self._names(np.flatnonzero(empty))} have no observed value; remove them "
                         "(nothing can be learnt of them)")

    def _names(self, columns: np.ndarray) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        return [str(names[j]) if names is not None else int(j) for j in columns]

    def fit(self, X: Any, y: Any = None) -> Self:  # noqa: N803
        """Standardise X with its observed entries and train the model on it (its columns with an observed
        cell; see the module notes for the others), with the stopping rule when validation_fraction > 0."""
        X = self._check(X, reset=True)  # noqa: N806
        missing = self._missing(X)
        empty = missing.all(axis=0)
        if empty.all():
            raise ValueError("every feature of X is missing in every row: nothing to learn")
        if empty.any():
            self._empty_columns(empty)
        self.columns_ = np.flatnonzero(~empty)  # the model's columns
        # C order whatever X's: the batches' memory layout decides how the model's sums are rounded (as the CLI's)
        x = np.ascontiguousarray(np.where(missing, np.nan, X)[:, self.columns_], dtype=np.float64)
        mask = np.ascontiguousarray(~missing[:, self.columns_])
        scale = Standardization.fit(x, mask)
        self.mean_, self.scale_ = np.asarray(scale.mean), np.asarray(scale.std)
        if isinstance(self.random_state, (int, np.integer)):
            self.seed_ = int(self.random_state)
            self._draws = np.random.RandomState(self.seed_)  # the seeds of sample(..., random_state=None)
        else:
            self._draws = check_random_state(self.random_state)
            self.seed_ = int(self._draws.randint(_SEEDS))
        n, d = x.shape
        config = run_config(self.settings(self.seed_), table_columns=d)
        config.batch_size = min(config.batch_size, n)
        empty_split = torch.zeros(0, d)
        data = DataSplits("scikit-learn", torch.from_numpy(scale.apply(x)).float(), empty_split, empty_split,
                          "gaussian", train_mask=torch.from_numpy(mask), valid_mask=empty_split.bool(),
                          test_mask=empty_split.bool())
        rng = capture_rng_state()  # training seeds the global generators: give them back as they were
        try:
            trainer = build_trainer(config, self.run_dir, data, log=print if self.verbose else _quiet,
                                    progress=bool(self.verbose))
            trainer.start()
            summary = trainer.fit()
        finally:
            restore_rng_state(rng)
        given = getattr(self, "feature_names_in_", None)
        names = [str(given[j]) for j in self.columns_] if given is not None else [str(j + 1) for j in self.columns_]
        transform = DataTransform(names, given is not None, scale, None, "gaussian", "scikit-learn")
        self.model_ = TrainedModel(trainer.model.eval(), transform, trainer.config.method,
                                   dict(trainer.config.method_options), trainer.config.to_dict(), trainer.state.step,
                                   method_proposal(trainer.config.method), "scikit-learn")
        if self.run_dir is not None:  # the run folder's model with its standardisation (no dataset record has it)
            self.model_.save(Path(self.run_dir) / MODEL_FILE)
        self.n_iter_ = trainer.state.step
        self.best_iter_ = summary["best_step"]  # the best check's update (early stopping), else the last
        checks = [r for r in trainer.state.history if r.get("kind") == "valid"]
        self.validation_scores_ = np.array([-r["valid_bound"] for r in checks])  # held-out RMSE per check
        self._fit_missing(X, empty)
        return self

    def _fit_missing(self, X: np.ndarray, empty: np.ndarray) -> None:  # noqa: N803
        """What transform needs of the missing cells in fit besides the model (DeepImputer)."""

    def _model_rows(self, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: N803
        """(X checked, its missing cells, the model's columns of X as float64 with NaN where missing)."""
        check_is_fitted(self)
        X = self._check(X, reset=False)  # noqa: N806
        missing = self._missing(X)
        return X, missing, np.ascontiguousarray(np.where(missing, np.nan, X)[:, self.columns_], dtype=np.float64)


def _quiet(message: str) -> None:
    pass


class DeepImputer(TransformerMixin, _DeepLatentEstimator):
    """Impute missing cells with a deep latent variable model (MIWAE by default, Mattei & Frellsen 2019).

    transform fills every missing cell by the self-normalised importance-sampling estimate of E[x_m | x_o]
    with `eval_particles` particles (deterministic given random_state); observed cells come back bit for
    bit. `sample(X, n_draws)` gives multiple imputations: posterior draws by sampling importance
    resampling, fresh on each call unless `random_state` is given. proposal: the encoder input of the
    importance sampler, "zero-filled" (what miwae trains) or "completed" (what miss-iwem trains); None
    picks the method's own (its `imputation_proposal`).

    Parameters: method (a deepem method for incomplete data: "miwae", "miss-iwem", "miss-iwem-woa"),
    particles (K during training), epochs (the budget in passes over the rows, used when max_iter is not
    given), max_iter (the budget in updates), max_epochs (a cap on it in passes), batch_size, latent_dim,
    hidden (MLP widths), activation, lr (None: the table defaults, as `deepem train` on a table: K = 20,
    batch 64, d - 1 latents, 128-128-128 tanh, 1e-3, 2000 updates or 200 passes); validation_fraction (> 0:
    the stopping rule on that fraction of the observed cells, see the module notes; None: 0, off),
    n_iter_no_change (None: 10), tol (None: 0), valid_every_steps (None: 50; its checks); eval_particles, proposal,
    method_options (more options of the method), missing_values (NaN, or a number such as -1),
    add_indicator (append scikit-learn's MissingIndicator columns), keep_empty_features (a column never
    observed in fit: True keeps it, filled with 0; False drops it with a warning), random_state,
    verbose, run_dir (None: train in memory; a path: also write a run folder there, as `deepem train`
    does). Fitted: model_ (a TrainedModel, on the columns with an observed cell: columns_), mean_,
    scale_ (their standardisation), indicator_ (with add_indicator), n_features_in_, feature_names_in_
    (for DataFrames), n_iter_ (updates run), best_iter_ (the update whose parameters the model holds),
    validation_scores_ (held-out RMSE at each check), seed_."""

    def __init__(self, method: str = "miwae", particles: int | None = None, epochs: int | None = None,
                 max_iter: int | None = None, max_epochs: int | None = None, batch_size: int | None = None,
                 latent_dim: int | None = None,
                 hidden: tuple[int, ...] | None = None, activation: str | None = None, lr: float | None = None,
                 validation_fraction: float | None = None, n_iter_no_change: int | None = None,
                 tol: float | None = None, valid_every_steps: int | None = None, eval_particles: int = 1000,
                 proposal: str | None = None,
                 method_options: dict[str, Any] | None = None, missing_values: float = np.nan,
                 add_indicator: bool = False, keep_empty_features: bool = False,
                 random_state: int | np.random.RandomState | None = None, verbose: bool = False,
                 run_dir: str | None = None) -> None:
        super().__init__(method=method, particles=particles, epochs=epochs, max_iter=max_iter,
                         max_epochs=max_epochs, batch_size=batch_size, latent_dim=latent_dim, hidden=hidden,
                         activation=activation, lr=lr,
                         validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change, tol=tol,
                         valid_every_steps=valid_every_steps, eval_particles=eval_particles, proposal=proposal,
                         method_options=method_options, missing_values=missing_values, random_state=random_state,
                         verbose=verbose, run_dir=run_dir)
        self.add_indicator = add_indicator
        self.keep_empty_features = keep_empty_features

    def _empty_columns(self, empty: np.ndarray) -> None:
        pass  # kept (filled with 0) or dropped with a warning at transform, as SimpleImputer does

    def _fit_missing(self, X: np.ndarray, empty: np.ndarray) -> None:  # noqa: N803
        self.indicator_ = MissingIndicator(missing_values=self.missing_values, error_on_new=False).fit(X) \
            if self.add_indicator else None

    def _output(self, X: np.ndarray, missing: np.ndarray, filled: np.ndarray) -> np.ndarray:  # noqa: N803
        """X's rows as transform returns them: the model's columns `filled` (..., N, D_model), each empty
        column kept (missing cells 0) or dropped, then the indicator columns; X's dtype."""
        lead = filled.shape[:-2]  # (n_draws,) for sample
        if self.keep_empty_features:
            out = np.broadcast_to(np.where(missing, 0.0, X), (*lead, *X.shape)).astype(X.dtype)
            out[..., self.columns_] = filled
        else:
            dropped = np.setdiff1d(np.arange(X.shape[1]), self.columns_)
            if dropped.size:
                warnings.warn(f"Skipping features without any observed values: {self._names(dropped)}. At least "
                              "one non-missing value is needed for imputation with DeepImputer.", stacklevel=3)
            out = filled.astype(X.dtype)
        if self.add_indicator:
            flags = self.indicator_.transform(X).astype(X.dtype)
            out = np.concatenate([out, np.broadcast_to(flags, (*lead, *flags.shape))], axis=-1)
        return out

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        """X with its missing cells filled (deterministic given random_state)."""
        X, missing, rows = self._model_rows(X)  # noqa: N806 - (checks the fit first)
        filled = self.model_.impute(rows, self.eval_particles, self.seed_, self.proposal)
        return self._output(X, missing, filled)

    def sample(self, X: Any, n_draws: int = 5,  # noqa: N803
               random_state: int | np.random.RandomState | None = None) -> np.ndarray:
        """(n_draws, N, D_out) multiple imputations of X (observed cells as given; columns as transform's).
        random_state None: fresh draws on each call, their seed from the estimator's random stream (that of
        its random_state, so a refit estimator repeats the same sequence of calls); an int: reproducible
        draws, the same on every call; a RandomState: the seed drawn from it."""
        X, missing, rows = self._model_rows(X)  # noqa: N806
        if isinstance(random_state, (int, np.integer)):
            seed = int(random_state)
        else:
            stream = self._draws if random_state is None else check_random_state(random_state)
            seed = int(stream.randint(_SEEDS))
        draws = self.model_.impute_draws(rows, n_draws, self.eval_particles, seed, self.proposal)
        return self._output(X, missing, draws)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The output's column names: the kept input features, then the indicator's."""
        check_is_fitted(self)
        if input_features is None:
            given = getattr(self, "feature_names_in_", None)
            input_features = given if given is not None else [f"x{j}" for j in range(self.n_features_in_)]
        elif len(input_features) != self.n_features_in_:
            raise ValueError(f"input_features should have length equal to number of features "
                             f"({self.n_features_in_}), got {len(input_features)}")
        names = np.asarray(input_features, dtype=object)
        kept = names if self.keep_empty_features else names[self.columns_]
        if self.add_indicator:
            kept = np.concatenate([kept, self.indicator_.get_feature_names_out(names)])
        return kept


class DeepDensityEstimator(DensityMixin, _DeepLatentEstimator):
    """A density estimator: `score_samples(X)` is each row's importance-weighted bound of log p(x) with
    `eval_particles` particles (log p(x_o), the density of the observed cells, for a row with missing
    cells), on the scale of X; `score(X)` their mean. Parameters and fitted attributes as `DeepImputer`
    (without add_indicator and keep_empty_features: a column never observed in fit is refused)."""

    def score_samples(self, X: Any) -> np.ndarray:  # noqa: N803
        rows = self._model_rows(X)[2]
        return self.model_.score(rows, self.eval_particles, self.seed_, self.proposal)

    def score(self, X: Any, y: Any = None) -> float:  # noqa: N803
        """Mean per-row log-likelihood of X (higher is better)."""
        return float(np.mean(self.score_samples(X)))
