"""The latent variable model p(z) p(x | z) together with its proposal q(z | x).

Parameters split into two groups that the papers update differently: the generative model θ (prior,
decoder and likelihood) and the encoder φ. Methods may add their own groups.

Three parts can be swapped independently (a mismatch of the latents' support is refused):
- the prior p(z): a module (`models.priors`), N(0, I) by default, learnable for a sigmoid belief net;
- the likelihood p(x | z) = likelihood(decoder(z)), with an optional observed-data mask;
- the encoder: `encode(x)` returns q(z | x) as a distribution object (`inference.distributions`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from deepem.inference.distributions import LatentDistribution, capabilities
from deepem.models.architectures import ARCHITECTURES, DEFAULT_LATENT_DIMS, LATENTS, get_architecture
from deepem.models.likelihoods import Likelihood, make_likelihood, observed
from deepem.models.priors import Prior, StandardNormalPrior, standard_normal_log_prob

__all__ = ["ARCHITECTURES", "DEFAULT_LATENT_DIMS", "LATENTS", "DeepLatentModel", "ModelConfig",
           "standard_normal_log_prob"]

ENCODER_KINDS = ("explicit", "implicit")


@dataclass
class ModelConfig:
    """The standard model of Burda et al. (2015): 50 latents, 200-200 tanh MLPs, Bernoulli likelihood.

    architecture: a preset of `models.architectures` ("mlp", the default and the model above;
        "mlp-2layer", Burda et al.'s two stochastic layers; "conv", Tomczak & Welling's gated CNN;
        "sbn", the stacked 200-200-200 sigmoid belief net of NVIL and VIMCO, with latent "bernoulli").
    architecture_options: keyword options of the preset's builder (e.g. {"layer_sizes": [3, 2],
        "between": [8]} for a tiny mlp-2layer; {"channels": 8} for a narrow conv); saved with the run.
    latent_dim: None = the default (DEFAULT_LATENT_DIMS: 50 Gaussian, 200 binary latents; mlp-2layer:
        the sum of its layers, 150).
    hidden: MLP widths between x and the (first) stochastic layer (mlp, mlp-2layer).
    latent: "gaussian" (N(0, I) prior, diagonal Gaussian q) or "bernoulli" (learnable factorised
        Bernoulli prior and q: a sigmoid belief net; hidden=[] makes its layers linear, as in the papers).
    encoder: "explicit" (q has a density) or "implicit" (z = f(x, ε), Gaussian latents only).
    noise_dim: width of ε for an implicit encoder; None = 32, IWAVB's setting (sec. 5)."""

    latent_dim: int | None = None
    hidden: list[int] = field(default_factory=lambda: [200, 200])
    activation: str = "tanh"
    likelihood: str | None = None  # None: the dataset's own ("bernoulli" for binary images)
    latent: str = "gaussian"
    encoder: str = "explicit"
    noise_dim: int | None = None
    architecture: str = "mlp"
    architecture_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.latent_dim is None:
            arch = ARCHITECTURES.get(self.architecture, ARCHITECTURES["mlp"])
            self.latent_dim = arch.default_latent_dim(self)

    def validate(self) -> None:
        if not isinstance(self.architecture_options, dict):
            raise ValueError(f"model.architecture_options must be a dict, got {self.architecture_options!r}")
        get_architecture(self.architecture).validate(self)
        if self.latent_dim < 1:
            raise ValueError(f"model.latent_dim must be >= 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"model.hidden widths must be >= 1, got {self.hidden}")
        if self.latent not in LATENTS:
            raise ValueError(f"unknown model.latent {self.latent!r}; choose one of {', '.join(LATENTS)}")
        if self.encoder not in ENCODER_KINDS:
            raise ValueError(f"unknown model.encoder {self.encoder!r}; choose one of {', '.join(ENCODER_KINDS)}")
        if self.encoder == "implicit" and self.latent != "gaussian":
            raise ValueError("an implicit encoder needs continuous latents: use latent 'gaussian' with it")
        if self.noise_dim is not None and self.noise_dim < 1:
            raise ValueError(f"model.noise_dim must be >= 1 or None, got {self.noise_dim}")


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

    @classmethod
    def from_config(cls, config: ModelConfig, data_dim: int, data_mean: Tensor | None = None
                    ) -> DeepLatentModel:
        """The model of `config.architecture` (a preset of `models.architectures`) for data_dim-dimensional
        data; with data_mean, the decoder's output bias starts at the data mean (Burda et al. 2015)."""
        config.validate()
        likelihood = make_likelihood(config.likelihood or "bernoulli")
        parts = get_architecture(config.architecture).build(config, data_dim, likelihood,
                                                            **config.architecture_options)
        if data_mean is not None and parts.output_bias is not None:
            likelihood.init_output_bias(parts.output_bias, data_mean)
        return cls(parts.decoder, likelihood, parts.encoder, config.latent_dim, data_dim, parts.prior,
                   parts.latent_layers)

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
        # A decoder ending in a linear layer hands that layer to the likelihood, which may fuse it with
        # log p(x | z) (inference/fused.py); other decoders run whole.
        if not (isinstance(decoder, nn.Sequential) and len(decoder) and isinstance(decoder[-1], nn.Linear)):
            return self.likelihood.log_prob(x, decoder(z), mask)
        *body, last = decoder
        h = z
        for module in body:
            h = module(h)
        return self.likelihood.log_prob_linear(x, h, last, mask)

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
