"""Networks, likelihoods, encoders and the latent variable model p(z) p(x | z) with q(z | x)."""

from deepem.models.encoders import GaussianEncoder, diagonal_gaussian
from deepem.models.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    HomoscedasticGaussianLikelihood,
    Likelihood,
    make_likelihood,
)
from deepem.models.lvm import DeepLatentModel, ModelConfig, standard_normal_log_prob
from deepem.models.networks import mlp

__all__ = [
    "BernoulliLikelihood",
    "DeepLatentModel",
    "GaussianEncoder",
    "GaussianLikelihood",
    "HomoscedasticGaussianLikelihood",
    "Likelihood",
    "ModelConfig",
    "diagonal_gaussian",
    "make_likelihood",
    "mlp",
    "standard_normal_log_prob",
]
