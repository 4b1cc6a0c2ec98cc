"""Shared closed forms for the EM-family method tests: a small linear-Gaussian problem (float64),
exact gradients of log p(x), of the ELBO's θ-part and of KL(p(z | x) || q(z | x)), and helpers that
differentiate one loss of a method with respect to one parameter group."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from deepem.methods.base import PHI, THETA, Method
from deepem.models.linear_gaussian import (
    exact_log_marginal,
    exact_posterior,
    linear_gaussian_model,
    set_encoder_to_posterior,
)
from deepem.models.lvm import DeepLatentModel

DATA_DIM, LATENT_DIM = 4, 2


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run a test on one intra-op thread: these tensors are tiny, and on a shared 2-core machine the
    second thread's synchronisation costs more than it saves (up to 7x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_problem(seed: int = 0, n: int = 5, std_scale: float = 1.3, mean_shift: float = 0.3,
                 noise_std: float = 0.7) -> tuple[DeepLatentModel, Tensor]:
    """A linear-Gaussian model, n data points drawn from it, and an encoder near (not at) the posterior:
    the exact posterior's mean map, shifted, with its marginal std times `std_scale`."""
    g = torch.Generator().manual_seed(seed)
    model = linear_gaussian_model(DATA_DIM, LATENT_DIM, noise_std=noise_std, generator=g)
    with torch.no_grad():
        z = torch.randn(n, LATENT_DIM, generator=g, dtype=torch.float64)
        x = model.decoder(z) + noise_std * torch.randn(n, DATA_DIM, generator=g, dtype=torch.float64)
    set_encoder_to_posterior(model, std_scale=std_scale)
    with torch.no_grad():
        layer = model.encoder.net[-1]
        layer.bias[:LATENT_DIM] += mean_shift * torch.randn(LATENT_DIM, generator=g, dtype=torch.float64)
    return model, x


def flat_grad(loss: Tensor, params: list[torch.nn.Parameter]) -> Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    flat = [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)]
    return torch.cat(flat)


def method_grad(method: Method, model: DeepLatentModel, x: Tensor, group: str, seed: int) -> Tensor:
    """Gradient of the method's `group` loss w.r.t. that group's parameters, for one seeded draw."""
    torch.manual_seed(seed)
    out = method(model, x)
    params = model.generative_parameters() if group == THETA else model.encoder_parameters()
    return flat_grad(out.losses[group], params)


def exact_theta_grad(model: DeepLatentModel, x: Tensor) -> Tensor:
    """∇θ of -mean_b log p(x_b): what every EM-family θ loss estimates."""
    return flat_grad(-exact_log_marginal(model, x).mean(), model.generative_parameters())


def expected_log_lik(model: DeepLatentModel, x: Tensor) -> Tensor:
    """E_q[log p(x | z)] per data point, closed form for the linear-Gaussian model (the θ-part of the
    ELBO): -(|x - W mu - b|^2 + sum_j sigma_j^2 |W_:j|^2) / (2 s^2) - D log s - D/2 log 2 pi."""
    w, b = model.decoder.weight, model.decoder.bias
    log_s = model.likelihood.log_std.squeeze()
    mean, std = model.encoder(x)
    mean, std = mean.detach(), std.detach()
    resid = (x - mean @ w.T - b).pow(2).sum(-1)
    spread = (std.pow(2) @ w.pow(2).sum(0).unsqueeze(-1)).squeeze(-1)
    d = x.shape[-1]
    return -(resid + spread) / (2 * torch.exp(2 * log_s)) - d * log_s - 0.5 * d * math.log(2 * math.pi)


def exact_elbo_theta_grad(model: DeepLatentModel, x: Tensor) -> Tensor:
    """∇θ of -mean_b ELBO(x_b) (only E_q[log p(x | z)] depends on θ)."""
    return flat_grad(-expected_log_lik(model, x).mean(), model.generative_parameters())


def inclusive_kl(model: DeepLatentModel, x: Tensor) -> Tensor:
    """KL(p(z | x) || q(z | x)) per data point, differentiable in φ (p's moments are constants)."""
    m, s = exact_posterior(model, x)
    m, s = m.detach(), s.detach()
    mu, std = model.encoder(x)
    var = std.pow(2)
    d = m.shape[-1]
    trace = (torch.diagonal(s) / var).sum(-1)
    maha = ((mu - m).pow(2) / var).sum(-1)
    return 0.5 * (trace + maha - d + torch.log(var).sum(-1) - torch.logdet(s))


def exact_kl_phi_grad(model: DeepLatentModel, x: Tensor) -> Tensor:
    """∇φ of mean_b KL(p(z | x_b) || q(z | x_b)): what the inclusive-KL φ losses estimate."""
    return flat_grad(inclusive_kl(model, x).mean(), model.encoder_parameters())


def relative_error(estimate: Tensor, exact: Tensor) -> float:
    return float((estimate - exact).norm() / exact.norm())


__all__ = [
    "DATA_DIM",
    "LATENT_DIM",
    "PHI",
    "THETA",
    "exact_elbo_theta_grad",
    "exact_kl_phi_grad",
    "exact_theta_grad",
    "expected_log_lik",
    "inclusive_kl",
    "make_problem",
    "method_grad",
    "relative_error",
    "single_thread",
]
