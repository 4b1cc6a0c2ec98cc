"""Closed forms of the linear-Gaussian model with missing coordinates, for the missing-data tests:
p(x) = N(b, Σ), Σ = W W^T + s^2 I, so for each row with observed set o and missing set m
    log p(x_o) = log N(x_o; b_o, Σ_oo),
    E[x_m | x_o] = b_m + Σ_mo Σ_oo^-1 (x_o - b_o),   Cov[x_m | x_o] = Σ_mm - Σ_mo Σ_oo^-1 Σ_om."""

from __future__ import annotations

import torch
from torch import Tensor

from deepem.models.lvm import DeepLatentModel


def marginal_covariance(model: DeepLatentModel) -> Tensor:
    w = model.decoder.weight
    var = torch.exp(2 * model.likelihood.log_std).squeeze()
    return w @ w.T + var * torch.eye(w.shape[0], dtype=w.dtype)


def exact_observed_log_marginal(model: DeepLatentModel, x: Tensor, mask: Tensor) -> Tensor:
    """log p(x_o) per row, differentiable in θ (W, b, log s)."""
    cov, b = marginal_covariance(model), model.decoder.bias
    out = [torch.distributions.MultivariateNormal(b[mi], cov[mi][:, mi]).log_prob(xi[mi])
           for xi, mi in zip(x, mask, strict=True)]
    return torch.stack(out)


@torch.no_grad()
def exact_conditional(model: DeepLatentModel, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(E[x | x_o], Var[x | x_o]) per row, shaped like x: observed entries are x and 0 variance."""
    cov, b = marginal_covariance(model), model.decoder.bias
    mean, var = x.clone(), torch.zeros_like(x)
    for i, (xi, o) in enumerate(zip(x, mask, strict=True)):
        m = ~o
        gain = cov[m][:, o] @ torch.linalg.inv(cov[o][:, o])
        mean[i, m] = b[m] + gain @ (xi[o] - b[o])
        var[i, m] = torch.diagonal(cov[m][:, m] - gain @ cov[o][:, m])
    return mean, var
