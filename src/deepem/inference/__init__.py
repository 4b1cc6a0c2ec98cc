"""Pure numerics shared by methods and evaluation: no parameters, no state."""

from deepem.inference.numerics import (
    effective_sample_size,
    log_mean_exp,
    normalized_weights,
    running_logsumexp,
)

__all__ = ["effective_sample_size", "log_mean_exp", "normalized_weights", "running_logsumexp"]
