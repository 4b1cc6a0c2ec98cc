"""Log-likelihood estimators and diagnostics of trained models."""

from deepem.evaluation.diagnostics import active_units, encoder_means, kl_to_prior
from deepem.evaluation.loglik import iw_log_likelihood, iw_log_likelihood_batch
from deepem.evaluation.results import LogLikelihoodEstimate

__all__ = [
    "LogLikelihoodEstimate",
    "active_units",
    "encoder_means",
    "iw_log_likelihood",
    "iw_log_likelihood_batch",
    "kl_to_prior",
]
