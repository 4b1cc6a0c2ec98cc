"""A linear-Gaussian model with two stochastic layers, built from the same classes as `mlp-2layer`
(HierarchicalGaussianPrior, HierarchicalEncoder, FirstLayerDecoder) with linear networks, so that
log p(x) and its gradients are known in closed form. Tests check the estimators against it.

    p(z2) = N(0, I),  p(z1 | z2) = N(A z2 + a, diag s1^2),  p(x | z1) = N(W z1 + b, s^2 I)
    x = W z1 + b + s e,  z1 = A z2 + a + s1 e1:
    p(x) = N(W a + b, W (A A^T + diag s1^2) W^T + s^2 I)

p(z1 | z2)'s std is exp of the conditional network's second half of outputs: the closed form holds
while the weights of that half are zero (a std that does not depend on z2), as the model is built."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepem.models.hierarchical import FirstLayerDecoder, HierarchicalEncoder, HierarchicalGaussianPrior
from deepem.models.likelihoods import HomoscedasticGaussianLikelihood
from deepem.models.lvm import DeepLatentModel


def two_layer_linear_gaussian_model(data_dim: int, layer_sizes: tuple[int, int] = (3, 2), noise_std: float = 0.5,
                                    z1_std: float = 0.7, generator: torch.Generator | None = None,
                                    dtype: torch.dtype = torch.float64) -> DeepLatentModel:
    """Random linear maps (entries 0.5 N(0, 1)), p(z1 | z2)'s std z1_std, the likelihood's noise_std."""
    d1, d2 = layer_sizes
    decoder = FirstLayerDecoder(nn.Linear(d1, data_dim), d1)
    likelihood = HomoscedasticGaussianLikelihood(data_dim, init_std=noise_std)
    encoder = HierarchicalEncoder(data_dim, (d1, d2), hidden=(), between=())
    prior = HierarchicalGaussianPrior((d1, d2), hidden=())
    model = DeepLatentModel(decoder, likelihood, encoder, d1 + d2, data_dim, prior, (d1, d2)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            if p is not likelihood.log_std:
                p.copy_(0.5 * torch.randn(p.shape, generator=generator, dtype=dtype))
        layer = prior.conditional.net[-1]
        layer.weight[d1:].zero_()  # log std of z1 | z2 does not depend on z2
        layer.bias[d1:].fill_(float(torch.log(torch.tensor(z1_std))))
    return model


def parts(model: DeepLatentModel) -> dict[str, Tensor]:
    """A (D1, D2), a (D1,), s1^2 (D1,), W (D, D1), b (D,), s^2 (a scalar), differentiable in θ."""
    d1 = model.latent_layers[0]
    cond = model.prior.conditional.net[-1]
    if cond.weight[d1:].detach().abs().max() > 0:
        raise ValueError("p(z1 | z2)'s std depends on z2: the closed form does not apply")
    lin = model.decoder.net
    return {"A": cond.weight[:d1], "a": cond.bias[:d1], "s1_sq": torch.exp(2 * cond.bias[d1:]),
            "W": lin.weight, "b": lin.bias, "s_sq": torch.exp(2 * model.likelihood.log_std).squeeze()}


def exact_marginal(model: DeepLatentModel) -> tuple[Tensor, Tensor]:
    """Mean (D,) and covariance (D, D) of x."""
    p = parts(model)
    cov_z1 = p["A"] @ p["A"].T + torch.diag(p["s1_sq"])
    cov = p["W"] @ cov_z1 @ p["W"].T + p["s_sq"] * torch.eye(p["W"].shape[0], dtype=p["W"].dtype)
    return p["W"] @ p["a"] + p["b"], cov


def exact_log_marginal(model: DeepLatentModel, x: Tensor) -> Tensor:
    """log p(x) per data point (B,), differentiable in θ."""
    mean, cov = exact_marginal(model)
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(x)


def set_encoder_near_posterior(model: DeepLatentModel) -> None:
    """q(z1 | x): the exact p(z1 | x)'s mean map and marginal stds; q(z2 | z1): the exact p(z2 | z1)'s
    (= p(z2 | z1, x), since x depends on z2 only through z1) mean map and marginal stds. q differs
    from the posterior only by dropping the off-diagonal covariances within each layer."""
    with torch.no_grad():
        p = parts(model)
        a_mat, a, w, b = p["A"], p["a"], p["W"], p["b"]
        d1, d2 = a_mat.shape
        eye2 = torch.eye(d2, dtype=w.dtype)
        prior_cov1 = a_mat @ a_mat.T + torch.diag(p["s1_sq"])
        prior_prec1 = torch.linalg.inv(prior_cov1)
        cov1 = torch.linalg.inv(prior_prec1 + w.T @ w / p["s_sq"])  # p(z1 | x)
        weight1 = cov1 @ w.T / p["s_sq"]
        bias1 = cov1 @ (prior_prec1 @ a) - weight1 @ b
        cov2 = torch.linalg.inv(eye2 + a_mat.T @ torch.diag(1 / p["s1_sq"]) @ a_mat)  # p(z2 | z1)
        weight2 = cov2 @ a_mat.T @ torch.diag(1 / p["s1_sq"])
        bias2 = -weight2 @ a
        for layer, weight, bias, cov, d in ((model.encoder.first.net[-1], weight1, bias1, cov1, d1),
                                            (model.encoder.second.net[-1], weight2, bias2, cov2, d2)):
            layer.weight.zero_()
            layer.weight[:d].copy_(weight)
            layer.bias[:d].copy_(bias)
            layer.bias[d:].copy_(0.5 * torch.log(torch.diagonal(cov)))
