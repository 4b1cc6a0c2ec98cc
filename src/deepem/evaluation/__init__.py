"""Log-likelihood estimators, imputation and diagnostics of trained models."""

from deepem.evaluation.ais import AISEstimator, ais_log_likelihood
from deepem.evaluation.bdmc import BDMCResult, bdmc
from deepem.evaluation.diagnostics import (
    active_units,
    active_units_per_layer,
    encoder_means,
    kl_estimator,
    kl_to_prior,
)
from deepem.evaluation.driver import Estimator, estimate
from deepem.evaluation.estimators import ESTIMATORS, make_estimator, register_estimator
from deepem.evaluation.imputation import ImputationResult, impute, missing_mse
from deepem.evaluation.loglik import IWEstimator, iw_log_likelihood, iw_log_likelihood_batch
from deepem.evaluation.observed_loglik import ObservedIWEstimator, observed_log_likelihood
from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.evaluation.settings import AISSettings, EstimatorSettingError, IWSettings, ObservedIWSettings

__all__ = [
    "AISEstimator",
    "AISSettings",
    "BDMCResult",
    "ESTIMATORS",
    "Estimator",
    "EstimatorSettingError",
    "IWEstimator",
    "IWSettings",
    "ImputationResult",
    "LogLikelihoodEstimate",
    "ObservedIWEstimator",
    "ObservedIWSettings",
    "active_units",
    "active_units_per_layer",
    "ais_log_likelihood",
    "bdmc",
    "encoder_means",
    "estimate",
    "impute",
    "iw_log_likelihood",
    "iw_log_likelihood_batch",
    "kl_estimator",
    "kl_to_prior",
    "make_estimator",
    "missing_mse",
    "observed_log_likelihood",
    "register_estimator",
]
