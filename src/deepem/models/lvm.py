"""The latent variable model p(z) p(x | z) together with its proposal q(z | x).

Parameters split into two groups that the papers update differently: the generative model θ
(decoder and likelihood) and the encoder φ. Methods may add their own groups."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from deepem.models.encoders import GaussianEncoder
from deepem.models.likelihoods import Likelihood, make_likelihood
from deepem.models.networks import mlp, output_layer

LOG_2PI = math.log(2 * math.pi)


@dataclass
class ModelConfig:
    """The standard model of Burda et al. (2015): 50 latents, 200-200 tanh MLPs, Bernoulli likelihood."""

    latent_dim: int = 50
    hidden: list[int] = field(default_factory=lambda: [200, 200])
    activation: str = "tanh"
    likelihood: str | None = None  # None: the dataset's own ("bernoulli" for binary images)

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"model.latent_dim must be >= 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"model.hidden widths must be >= 1, got {self.hidden}")


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)


class DeepLatentModel(nn.Module):
    """p(z) = N(0, I), p(x | z) = likelihood(decoder(z)), q(z | x) = encoder(x)."""

    def __init__(self, decoder: nn.Module, likelihood: Likelihood, encoder: nn.Module,
                 latent_dim: int, data_dim: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.likelihood = likelihood
        self.encoder = encoder
        self.latent_dim = latent_dim
        self.data_dim = data_dim

    @classmethod
    def from_config(cls, config: ModelConfig, data_dim: int, data_mean: Tensor | None = None
                    ) -> DeepLatentModel:
        config.validate()
        likelihood = make_likelihood(config.likelihood or "bernoulli")
        decoder = mlp(config.latent_dim, config.hidden, likelihood.out_features(data_dim), config.activation)
        encoder = GaussianEncoder(data_dim, config.latent_dim, config.hidden, config.activation)
        if data_mean is not None:
            likelihood.init_output_bias(output_layer(decoder).bias, data_mean)
        return cls(decoder, likelihood, encoder, config.latent_dim, data_dim)

    # parameter groups -------------------------------------------------------------------------
    def generative_parameters(self) -> list[nn.Parameter]:
        """θ: the decoder and any parameters of the likelihood."""
        return list(self.decoder.parameters()) + list(self.likelihood.parameters())

    def encoder_parameters(self) -> list[nn.Parameter]:
        """φ: the encoder."""
        return list(self.encoder.parameters())

    # densities --------------------------------------------------------------------------------
    def log_prior(self, z: Tensor) -> Tensor:
        return standard_normal_log_prob(z)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) for z shaped (..., B, Dz) and x shaped (B, D): one decoder call for all particles."""
        return self.likelihood.log_prob(x, self.decoder(z))

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        return self.log_prior(z) + self.log_likelihood(x, z)

    # sampling ---------------------------------------------------------------------------------
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        p = next(self.parameters())
        return torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype, device=p.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> Tensor:
        """x ~ p(x): the likelihood's mean (a clean image) or a draw from it."""
        out = self.decoder(self.sample_prior(n, generator))
        return self.likelihood.mean(out) if mean else self.likelihood.sample(out, generator)

    def check_data(self, x: Tensor) -> None:
        """Raise a ValueError naming the problem if `x` does not fit this model."""
        if x.dim() != 2 or x.shape[-1] != self.data_dim:
            raise ValueError(
                f"expected data shaped (batch, {self.data_dim}), got {tuple(x.shape)}; "
                "flatten images to vectors and check the dataset matches the model"
            )
        self.likelihood.check_data(x)
