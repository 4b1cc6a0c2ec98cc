"""Networks, likelihoods, priors, encoders and the latent variable model p(z) p(x | z) with q(z | x)."""

from deepem.models.config import ARCHITECTURES, Architecture, ModelConfig, get_architecture, make_model
from deepem.models.conv import ConvDecoder, ConvEncoder
from deepem.models.encoders import BernoulliEncoder, Encoder, GaussianEncoder, ImplicitEncoder, diagonal_gaussian
from deepem.models.hierarchical import (
    FirstLayerDecoder,
    GaussianLayer,
    HierarchicalEncoder,
    HierarchicalGaussianPrior,
    split_layers,
)
from deepem.models.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    HomoscedasticGaussianLikelihood,
    Likelihood,
    make_likelihood,
)
from deepem.models.lvm import DeepLatentModel, ModelParts
from deepem.models.networks import MLP, mlp
from deepem.models.priors import BernoulliPrior, Prior, StandardNormalPrior, standard_normal_log_prob
from deepem.models.sbn import StackedBernoulliEncoder, StackedBernoulliPrior

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ConvDecoder",
    "ConvEncoder",
    "FirstLayerDecoder",
    "GaussianLayer",
    "HierarchicalEncoder",
    "HierarchicalGaussianPrior",
    "MLP",
    "ModelParts",
    "make_model",
    "get_architecture",
    "split_layers",
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
    "StackedBernoulliEncoder",
    "StackedBernoulliPrior",
    "StandardNormalPrior",
    "diagonal_gaussian",
    "make_likelihood",
    "mlp",
    "standard_normal_log_prob",
]
