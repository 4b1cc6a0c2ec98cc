"""deepem as scikit-learn estimators: `DeepImputer` (fit / transform: NaN cells filled) and
`DeepDensityEstimator` (fit / score_samples / score: per-row log p(x), or log p(x_o) for rows with NaN).

    from deepem.sklearn import DeepImputer
    filled = DeepImputer(method="miwae", epochs=200, random_state=0).fit_transform(table_with_nans)

Both build and train their model through the same function as `deepem train --dataset FILE.csv`
(`workflows.assembly.run_config` and `build_trainer`), with the same table defaults (models/config.py
`TABLE_DEFAULTS`: the MIWAE paper's UCI settings) for every setting left at None, in memory (no run folder
unless `run_dir` names one), on the columns standardised with their observed entries. The fitted `model_`
is a `TrainedModel` (the object `deepem.load` returns; it pickles, and `model_.save(PATH)` writes it as a
file); outputs are on the input's own scale (scores include the Jacobian of the standardisation, so they
are log-densities of the rows as given). At the same settings and seed the CLI's run and the estimator
give the same model bit for bit.

Monte Carlo estimates draw from one generator seeded by `random_state`, in row order: the same input
gives the same output (fit, transform and score_samples are deterministic given random_state), but the
estimate for a row with something to estimate depends on the rows before it in the call, so
scikit-learn's subset- and order-invariance checks fail for `score_samples` (and would for `transform`
on rows with NaN; scikit-learn's checks give the imputer complete rows, which come back unchanged).

scikit-learn is an optional dependency: `pip install deepem[sklearn]`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from sklearn.base import BaseEstimator, DensityMixin, OneToOneFeatureMixin, TransformerMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError("deepem.sklearn needs scikit-learn 1.6 or later: pip install 'deepem[sklearn]'") from err

from deepem.data.base import DataSplits
from deepem.data.own_dataset import Standardization
from deepem.training.rng import capture_rng_state, restore_rng_state
from deepem.workflows.assembly import build_trainer, run_config
from deepem.workflows.trained_model import MODEL_FILE, DataTransform, TrainedModel, method_proposal

__all__ = ["DeepDensityEstimator", "DeepImputer"]

_CHECK = {"ensure_all_finite": "allow-nan", "dtype": np.float64, "ensure_min_samples": 2}


class _DeepLatentEstimator(BaseEstimator):
    """What both estimators share: the settings, `fit`, and the data in model units."""

    def __init__(self, method: str = "miwae", particles: int | None = None, epochs: int = 100,
                 batch_size: int | None = None, latent_dim: int | None = None, hidden: tuple[int, ...] | None = None,
                 activation: str | None = None, lr: float | None = None, eval_particles: int = 1000,
                 proposal: str | None = None, method_options: dict[str, Any] | None = None,
                 random_state: int | np.random.RandomState | None = None, verbose: bool = False,
                 run_dir: str | None = None) -> None:
        self.method = method
        self.particles = particles
        self.epochs = epochs
        self.batch_size = batch_size
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.lr = lr
        self.eval_particles = eval_particles
        self.proposal = proposal
        self.method_options = method_options
        self.random_state = random_state
        self.verbose = verbose
        self.run_dir = run_dir

    def __sklearn_tags__(self):  # noqa: ANN204 - the Tags class moved between scikit-learn versions
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def settings(self, seed: int) -> dict[str, Any]:
        """The run settings by name that this estimator sets; the table defaults fill in the rest."""
        given = {"method": self.method, "particles": self.particles, "epochs": self.epochs,
                 "batch_size": self.batch_size, "model.latent_dim": self.latent_dim,
                 "model.hidden": None if self.hidden is None else [int(h) for h in self.hidden],
                 "model.activation": self.activation, "lr": self.lr,
                 "method_options": None if self.method_options is None else dict(self.method_options)}
        return {"dataset": "scikit-learn", "seed": seed, "valid_every": 0, "split": "1,0,0",
                **{k: v for k, v in given.items() if v is not None}}

    def fit(self, X: Any, y: Any = None) -> _DeepLatentEstimator:  # noqa: N803 - scikit-learn's name
        """Standardise X with its observed entries (NaN = missing) and train the model on it."""
        X = validate_data(self, X, **_CHECK)  # noqa: N806
        mask = ~np.isnan(X)
        scale = Standardization.fit(X, mask)
        self.mean_, self.scale_ = np.asarray(scale.mean), np.asarray(scale.std)
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)) \
            if not isinstance(self.random_state, (int, np.integer)) else int(self.random_state)
        n, d = X.shape
        config = run_config(self.settings(self.seed_), table_columns=d)
        config.batch_size = min(config.batch_size, n)
        empty = torch.zeros(0, d)
        data = DataSplits("scikit-learn", torch.from_numpy(scale.apply(X)).float(), empty, empty, "gaussian",
                          train_mask=torch.from_numpy(mask), valid_mask=empty.bool(), test_mask=empty.bool())
        rng = capture_rng_state()  # training seeds the global generators: give them back as they were
        try:
            trainer = build_trainer(config, self.run_dir, data, log=print if self.verbose else _quiet,
                                    progress=bool(self.verbose))
            trainer.start()
            trainer.fit()
        finally:
            restore_rng_state(rng)
        names = [str(c) for c in getattr(self, "feature_names_in_", [])] or [str(j + 1) for j in range(d)]
        transform = DataTransform(names, hasattr(self, "feature_names_in_"), scale, None, "gaussian", "scikit-learn")
        self.model_ = TrainedModel(trainer.model.eval(), transform, trainer.config.method,
                                   dict(trainer.config.method_options), trainer.config.to_dict(), trainer.state.step,
                                   method_proposal(trainer.config.method), "scikit-learn")
        if self.run_dir is not None:  # the run folder's model with its standardisation (no dataset record has it)
            self.model_.save(Path(self.run_dir) / MODEL_FILE)
        self.n_iter_ = trainer.state.epoch
        return self

    def _rows(self, X: Any) -> np.ndarray:  # noqa: N803
        check_is_fitted(self)
        return validate_data(self, X, reset=False, **{**_CHECK, "ensure_min_samples": 1})


def _quiet(message: str) -> None:
    pass


class DeepImputer(OneToOneFeatureMixin, TransformerMixin, _DeepLatentEstimator):
    """Impute NaN cells with a deep latent variable model (MIWAE by default, Mattei & Frellsen 2019).

    transform fills every NaN by the self-normalised importance-sampling estimate of E[x_m | x_o] with
    `eval_particles` particles; observed cells come back bit for bit. `sample(X, n_draws)` gives
    multiple imputations by sampling importance resampling. proposal: the encoder input of the
    importance sampler, "zero-filled" (what miwae trains) or "completed" (what miss-iwem trains);
    None picks the method's own (its `imputation_proposal`).

    Parameters: method (a deepem method for incomplete data: "miwae", "miss-iwem", "miss-iwem-woa"),
    particles (K during training), epochs, batch_size, latent_dim, hidden (MLP widths), activation, lr
    (None: the table defaults, as `deepem train` on a table: K = 20, batch 64, d - 1 latents, 128-128-128
    tanh, 1e-3), eval_particles, proposal, method_options (more options of the method), random_state,
    verbose, run_dir (None: train in memory; a path: also write a run folder there, as `deepem train`
    does). Fitted: model_ (a TrainedModel), mean_, scale_ (the standardisation), n_features_in_,
    feature_names_in_ (for DataFrames), n_iter_ (epochs run), seed_."""

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        rows = self._rows(X)  # (checks the fit first)
        return self.model_.impute(rows, self.eval_particles, self.seed_, self.proposal)

    def sample(self, X: Any, n_draws: int = 5) -> np.ndarray:  # noqa: N803
        """(n_draws, N, D) multiple imputations of X (observed cells as given)."""
        rows = self._rows(X)
        return self.model_.impute_draws(rows, n_draws, self.eval_particles, self.seed_, self.proposal)


class DeepDensityEstimator(DensityMixin, _DeepLatentEstimator):
    """A density estimator: `score_samples(X)` is each row's importance-weighted bound of log p(x) with
    `eval_particles` particles (log p(x_o), the density of the observed cells, for a row with NaN), on
    the scale of X; `score(X)` their mean. Parameters and fitted attributes as `DeepImputer`."""

    def score_samples(self, X: Any) -> np.ndarray:  # noqa: N803
        rows = self._rows(X)
        return self.model_.score(rows, self.eval_particles, self.seed_, self.proposal)

    def score(self, X: Any, y: Any = None) -> float:  # noqa: N803
        """Mean per-row log-likelihood of X (higher is better)."""
        return float(np.mean(self.score_samples(X)))
