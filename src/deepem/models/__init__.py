"""Networks, likelihoods, priors, encoders and the latent variable model p(z) p(x | z) with q(z | x)."""

from deepem.models.encoders import BernoulliEncoder, Encoder, GaussianEncoder, ImplicitEncoder, diagonal_gaussian
from deepem.models.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    HomoscedasticGaussianLikelihood,
    Likelihood,
    make_likelihood,
)
from deepem.models.lvm import DeepLatentModel, ModelConfig
from deepem.models.networks import mlp
from deepem.models.priors import BernoulliPrior, Prior, StandardNormalPrior, standard_normal_log_prob

__all__ = [
    "BernoulliEncoder",
    "BernoulliLikelihood",
    "BernoulliPrior",
    "DeepLatentModel",
    "Encoder",
    "GaussianEncoder",
    "GaussianLikelihood",
    "HomoscedasticGaussianLikelihood",
    "ImplicitEncoder",
    "Likelihood",
    "ModelConfig",
    "Prior",
    "StandardNormalPrior",
    "diagonal_gaussian",
    "make_likelihood",
    "mlp",
    "standard_normal_log_prob",
]
