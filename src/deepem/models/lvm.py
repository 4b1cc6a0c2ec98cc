"""The latent variable model p(z) p(x | z) together with its proposal q(z | x).

Parameters split into two groups that the papers update differently: the generative model θ (prior,
decoder and likelihood) and the encoder φ. Methods may add their own groups.

Three parts can be swapped independently (a mismatch of the latents' support is refused):
- the prior p(z): a module (`models.priors`), N(0, I) by default, learnable for a sigmoid belief net;
- the likelihood p(x | z) = likelihood(decoder(z)), with an optional observed-data mask;
- the encoder: `encode(x)` returns q(z | x) as a distribution object (`inference.distributions`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from deepem.inference.capabilities import capabilities
from deepem.inference.distributions import LatentDistribution
from deepem.models.likelihoods import Likelihood, observed
from deepem.models.networks import MLP, full_precision, heads_in_float32, network_region
from deepem.models.priors import Prior, StandardNormalPrior

__all__ = ["DeepLatentModel", "ModelParts"]


@dataclass
class ModelParts:
    """What a preset's builder returns (`models.config`): the networks and prior of a DeepLatentModel, the
    sizes of its stochastic layers in the order of z, and the decoder bias to start at the data mean (None:
    no such bias)."""

    decoder: nn.Module
    encoder: nn.Module
    prior: Prior
    latent_layers: tuple[int, ...]
    output_bias: Tensor | None



class DeepLatentModel(nn.Module):
    """p(z) = prior, p(x | z) = likelihood(decoder(z)), q(z | x) = encoder.distribution(x).

    latent_layers: sizes of the stochastic layers in the order of z's last dimension (one layer of
    latent_dim units by default; (D1, D2) for two layers, z = [z1, z2]), for per-layer diagnostics."""

    def __init__(self, decoder: nn.Module, likelihood: Likelihood, encoder: nn.Module,
                 latent_dim: int, data_dim: int, prior: Prior | None = None,
                 latent_layers: Sequence[int] | None = None) -> None:
        super().__init__()
        self.decoder = decoder
        self.likelihood = likelihood
        self.encoder = encoder
        self.prior = StandardNormalPrior(latent_dim) if prior is None else prior
        self.latent_dim = latent_dim
        self.data_dim = data_dim
        self.latent_layers = (latent_dim,) if latent_layers is None else tuple(int(d) for d in latent_layers)
        if sum(self.latent_layers) != latent_dim:
            raise ValueError(f"latent_layers {self.latent_layers} must add up to latent_dim {latent_dim}")
        q_support = getattr(encoder, "support", self.prior.support)
        if q_support != self.prior.support:
            raise ValueError(f"the encoder's latents are {q_support} but the prior's are {self.prior.support}; "
                             "use an encoder and a prior over the same kind of z")

    # what the model offers a method ------------------------------------------------------------
    @property
    def latent_support(self) -> str:
        return self.prior.support

    def capabilities(self) -> frozenset[str]:
        """What q and z allow (see `inference.distributions`): a method's `requires` must be a subset."""
        enc = self.encoder
        return capabilities(getattr(enc, "has_rsample", True), getattr(enc, "has_log_prob", True),
                            self.latent_support, getattr(enc, "diagonal_q", False))

    # parameter groups -------------------------------------------------------------------------
    def generative_parameters(self) -> list[nn.Parameter]:
        """θ: the decoder, any parameters of the likelihood, and a learnable prior's."""
        return (list(self.decoder.parameters()) + list(self.likelihood.parameters())
                + list(self.prior.parameters()))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """φ: the encoder."""
        return list(self.encoder.parameters())

    # densities --------------------------------------------------------------------------------
    def encode(self, x: Tensor, mask: Tensor | None = None) -> LatentDistribution:
        """q(z | x). With a mask, missing entries are given to the encoder as zeros (zero imputation,
        as in MIWAE, Mattei & Frellsen 2019): the encoder never reads a missing value."""
        return self.encoder.distribution(observed(x, mask))

    def log_prior(self, z: Tensor) -> Tensor:
        return self.prior.log_prob(z)

    def log_likelihood(self, x: Tensor, z: Tensor, mask: Tensor | None = None) -> Tensor:
        """log p(x_obs | z) for z shaped (..., B, Dz) and x shaped (B, D): one decoder call for all
        particles; with a mask (True = observed) only observed dimensions count."""
        decoder = self.decoder
        # A decoder that states a body and a linear output head (an MLP) hands the head to the
        # likelihood, which may fuse it with log p(x | z) (models/bernoulli_head.py); others run whole.
        # Under mixed precision (models/networks.py networks_in) the decoder's products run in the reduced
        # type and the likelihood in float32 from its output; with float32 heads the output layer is outside.
        if isinstance(decoder, MLP):
            with network_region(z):
                h = decoder.body(z)
                if not heads_in_float32():
                    return self.likelihood.log_prob_linear(x, h, decoder.head, mask)
            return self.likelihood.log_prob_linear(x, full_precision(h), decoder.head, mask)
        return self.likelihood.log_prob(x, full_precision(decoder(z)), mask)

    def log_joint(self, x: Tensor, z: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.log_prior(z) + self.log_likelihood(x, z, mask)

    # sampling ---------------------------------------------------------------------------------
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        p = next(self.parameters())
        return self.prior.sample(n, generator, dtype=p.dtype, device=p.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> Tensor:
        """x ~ p(x): the likelihood's mean (a clean image) or a draw from it."""
        out = self.decoder(self.sample_prior(n, generator))
        return self.likelihood.mean(out) if mean else self.likelihood.sample(out, generator)

    def check_data(self, x: Tensor, mask: Tensor | None = None) -> None:
        """Raise a ValueError naming the problem if `x` (with its optional mask) does not fit this model."""
        if x.dim() != 2 or x.shape[-1] != self.data_dim:
            raise ValueError(
                f"expected data shaped (batch, {self.data_dim}), got {tuple(x.shape)}; "
                "flatten images to vectors and check the dataset matches the model"
            )
        self.likelihood.check_data(x, mask)
