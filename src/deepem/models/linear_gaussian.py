"""The linear-Gaussian latent variable model (probabilistic PCA), where log p(x), the posterior
p(z | x) and their gradients are known in closed form. Tests check every estimator against it.

    p(z) = N(0, I),  p(x | z) = N(W z + b, s^2 I)
    p(x) = N(b, W W^T + s^2 I)
    p(z | x) = N(m, S),  S = (I + W^T W / s^2)^-1,  m = S W^T (x - b) / s^2
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from deepem.models.encoders import GaussianEncoder
from deepem.models.likelihoods import HomoscedasticGaussianLikelihood
from deepem.models.lvm import DeepLatentModel


def linear_gaussian_model(data_dim: int, latent_dim: int, noise_std: float = 0.5,
                          generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
                          ) -> DeepLatentModel:
    """A DeepLatentModel with a linear decoder, one shared noise scale and a linear Gaussian encoder."""
    decoder = nn.Linear(latent_dim, data_dim)
    likelihood = HomoscedasticGaussianLikelihood(data_dim, init_std=noise_std)
    encoder = GaussianEncoder(data_dim, latent_dim, hidden=())
    model = DeepLatentModel(decoder, likelihood, encoder, latent_dim, data_dim).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            if p is not likelihood.log_std:
                p.copy_(0.5 * torch.randn(p.shape, generator=generator, dtype=dtype))
    return model


def _parts(model: DeepLatentModel) -> tuple[Tensor, Tensor, Tensor]:
    w, b = model.decoder.weight, model.decoder.bias
    var = torch.exp(2 * model.likelihood.log_std).squeeze()
    return w, b, var


def exact_log_marginal(model: DeepLatentModel, x: Tensor) -> Tensor:
    """log p(x) per data point, differentiable in the decoder parameters."""
    w, b, var = _parts(model)
    d = w.shape[0]
    cov = w @ w.T + var * torch.eye(d, dtype=w.dtype)
    chol = torch.linalg.cholesky(cov)
    r = torch.linalg.solve_triangular(chol, (x - b).T, upper=False)  # (D, B)
    log_det = 2 * torch.log(torch.diagonal(chol)).sum()
    return -0.5 * (r.pow(2).sum(0) + log_det + d * math.log(2 * math.pi))


def exact_posterior(model: DeepLatentModel, x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (B, Dz) and covariance (Dz, Dz, shared by all x) of p(z | x)."""
    w, b, var = _parts(model)
    k = w.shape[1]
    precision = torch.eye(k, dtype=w.dtype) + w.T @ w / var
    cov = torch.linalg.inv(precision)
    mean = (x - b) @ w @ cov.T / var
    return mean, cov


def set_encoder_to_posterior(model: DeepLatentModel, std_scale: float = 1.0) -> None:
    """Make q(z | x) the exact posterior's mean with the marginal posterior std (times a scale).
    Only the diagonal of the covariance can be matched: q stays a diagonal Gaussian."""
    w, b, var = _parts(model)
    k = w.shape[1]
    cov = torch.linalg.inv(torch.eye(k, dtype=w.dtype) + w.T @ w / var)
    weight = (cov @ w.T / var).detach()  # (Dz, D)
    layer = model.encoder.net[-1]
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[:k].copy_(weight)
        layer.bias[:k].copy_(-(weight @ b))
        layer.bias[k:].copy_(torch.log(std_scale * torch.sqrt(torch.diagonal(cov))))
