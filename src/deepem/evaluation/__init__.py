"""Log-likelihood estimators, imputation and diagnostics of trained models."""

from deepem.evaluation.ais import ais_log_likelihood
from deepem.evaluation.bdmc import BDMCResult, bdmc
from deepem.evaluation.diagnostics import (
    active_units,
    active_units_per_layer,
    encoder_means,
    kl_estimator,
    kl_to_prior,
)
from deepem.evaluation.imputation import ImputationResult, impute, missing_mse
from deepem.evaluation.loglik import iw_log_likelihood, iw_log_likelihood_batch
from deepem.evaluation.results import LogLikelihoodEstimate

__all__ = [
    "BDMCResult",
    "ImputationResult",
    "LogLikelihoodEstimate",
    "active_units",
    "active_units_per_layer",
    "ais_log_likelihood",
    "bdmc",
    "encoder_means",
    "impute",
    "iw_log_likelihood",
    "iw_log_likelihood_batch",
    "kl_estimator",
    "kl_to_prior",
    "missing_mse",
]
