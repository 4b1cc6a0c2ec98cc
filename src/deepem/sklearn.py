"""deepem as scikit-learn estimators: `DeepImputer` (fit / transform: NaN cells filled) and
`DeepDensityEstimator` (fit / score_samples / score: per-row log p(x), or log p(x_o) for rows with NaN).

    from deepem.sklearn import DeepImputer
    filled = DeepImputer(method="miwae", epochs=200, random_state=0).fit_transform(table_with_nans)

Both train a Gaussian deep latent variable model with a deepem method (`methods.registry.make_method`)
through the library's `Trainer`, in a temporary run folder that is removed afterwards, on the columns
standardised with their observed entries; outputs are returned on the input's own scale (scores include
the Jacobian of the standardisation, so they are log-densities of the rows as given).

Monte Carlo estimates draw from one generator seeded by `random_state`, in row order: the same input
gives the same output (fit, transform and score_samples are deterministic given random_state), but the
estimate for a row with something to estimate depends on the rows before it in the call, so
scikit-learn's subset- and order-invariance checks fail for `score_samples` (and would for `transform`
on rows with NaN; scikit-learn's checks give the imputer complete rows, which come back unchanged).

scikit-learn is an optional dependency: `pip install deepem[sklearn]`."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import torch

try:
    from sklearn.base import BaseEstimator, DensityMixin, OneToOneFeatureMixin, TransformerMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError("deepem.sklearn needs scikit-learn 1.6 or later: pip install 'deepem[sklearn]'") from err

from deepem.data.own_dataset import Standardization
from deepem.evaluation.own_rows import impute_rows, score_rows
from deepem.methods.registry import make_method
from deepem.models import ModelConfig, make_model
from deepem.training import TrainConfig, Trainer

__all__ = ["DeepDensityEstimator", "DeepImputer"]

_CHECK = {"ensure_all_finite": "allow-nan", "dtype": np.float64, "ensure_min_samples": 2}


class _DeepLatentEstimator(BaseEstimator):
    """What both estimators share: the settings, `fit`, and the data in model units."""

    def __init__(self, method: str = "miwae", particles: int = 20, epochs: int = 100, batch_size: int = 64,
                 latent_dim: int | None = None, hidden: tuple[int, ...] = (128, 128, 128),
                 activation: str = "tanh", lr: float = 1e-3, eval_particles: int = 1000,
                 proposal: str | None = None, method_options: dict[str, Any] | None = None,
                 random_state: int | np.random.RandomState | None = None, verbose: bool = False) -> None:
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

    def __sklearn_tags__(self):  # noqa: ANN204 - the Tags class moved between scikit-learn versions
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X: Any, y: Any = None) -> _DeepLatentEstimator:  # noqa: N803 - scikit-learn's name
        """Standardise X with its observed entries (NaN = missing) and train the model on it."""
        X = validate_data(self, X, **_CHECK)  # noqa: N806
        mask = ~np.isnan(X)
        scale = Standardization.fit(X, mask)
        self.mean_, self.scale_ = np.asarray(scale.mean), np.asarray(scale.std)
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)) \
            if not isinstance(self.random_state, (int, np.integer)) else int(self.random_state)
        n, d = X.shape
        config = ModelConfig(latent_dim=self.latent_dim or max(1, d - 1), hidden=list(self.hidden),
                             activation=self.activation, likelihood="gaussian")
        data = torch.from_numpy(scale.apply(X)).float()
        with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory(prefix="deepem-sklearn-") as run:
            torch.manual_seed(self.seed_)  # the initial weights are part of the fit
            model = make_model(config, d)
            method = make_method(self.method, particles=self.particles, **(self.method_options or {}))
            settings = TrainConfig(dataset="scikit-learn", epochs=self.epochs, batch_size=min(self.batch_size, n),
                                   lr=self.lr, seed=self.seed_, valid_every=0, keep_checkpoints=1,
                                   checkpoint_every=max(1, self.epochs))
            trainer = Trainer(model, method, data, run, settings, train_mask=torch.from_numpy(mask),
                              log=print if self.verbose else _quiet, progress=bool(self.verbose))
            trainer.start()
            trainer.fit()
        self.model_ = model.eval()
        self.n_iter_ = self.epochs
        return self

    def _rows(self, X: Any) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, **{**_CHECK, "ensure_min_samples": 1})  # noqa: N806
        mask = ~np.isnan(X)
        scaled = (X - self.mean_) / self.scale_
        return X, torch.from_numpy(scaled), torch.from_numpy(mask)

    def _proposal(self) -> str:
        if self.proposal is not None:
            return self.proposal
        return "completed" if self.method.startswith("miss-iwem") else "zero-filled"


def _quiet(message: str) -> None:
    pass


class DeepImputer(OneToOneFeatureMixin, TransformerMixin, _DeepLatentEstimator):
    """Impute NaN cells with a deep latent variable model (MIWAE by default, Mattei & Frellsen 2019).

    transform fills every NaN by the self-normalised importance-sampling estimate of E[x_m | x_o] with
    `eval_particles` particles; observed cells come back bit for bit. `sample(X, n_draws)` gives
    multiple imputations by sampling importance resampling. proposal: the encoder input of the
    importance sampler, "zero-filled" (what miwae trains) or "completed" (what miss-iwem trains);
    None picks the method's own.

    Parameters: method (a deepem method for incomplete data: "miwae", "miss-iwem", "miss-iwem-woa"),
    particles (K during training), epochs, batch_size, latent_dim (None: features - 1), hidden (MLP
    widths), activation, lr, eval_particles, proposal, method_options (more options of the method),
    random_state, verbose. Fitted: model_, mean_, scale_ (the standardisation), n_features_in_,
    feature_names_in_ (for DataFrames), n_iter_ (epochs run), seed_."""

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        X, rows, mask = self._rows(X)  # noqa: N806
        result = impute_rows(self.model_, rows, mask, self.eval_particles, 0, self._proposal(), self.seed_)
        return self._file_scale(X, mask, result.imputed)

    def sample(self, X: Any, n_draws: int = 5) -> np.ndarray:  # noqa: N803
        """(n_draws, N, D) multiple imputations of X (observed cells as given)."""
        X, rows, mask = self._rows(X)  # noqa: N806
        result = impute_rows(self.model_, rows, mask, self.eval_particles, n_draws, self._proposal(), self.seed_)
        return np.stack([self._file_scale(X, mask, d) for d in result.draws])

    def _file_scale(self, X: np.ndarray, mask: torch.Tensor, imputed: torch.Tensor) -> np.ndarray:  # noqa: N803
        out = imputed.double().numpy() * self.scale_ + self.mean_
        observed = mask.numpy()
        out[observed] = X[observed]
        return out


class DeepDensityEstimator(DensityMixin, _DeepLatentEstimator):
    """A density estimator: `score_samples(X)` is each row's importance-weighted bound of log p(x) with
    `eval_particles` particles (log p(x_o), the density of the observed cells, for a row with NaN), on
    the scale of X; `score(X)` their mean. Parameters and fitted attributes as `DeepImputer`."""

    def score_samples(self, X: Any) -> np.ndarray:  # noqa: N803
        _, rows, mask = self._rows(X)
        complete = bool(mask.all())
        estimate = score_rows(self.model_, rows, None if complete else mask, self.eval_particles,
                              self._proposal(), self.seed_)
        jacobian = -(mask.numpy() * np.log(self.scale_)).sum(axis=1)
        return estimate.per_point.numpy() + jacobian

    def score(self, X: Any, y: Any = None) -> float:  # noqa: N803
        """Mean per-row log-likelihood of X (higher is better)."""
        return float(np.mean(self.score_samples(X)))
