"""AVB and IWAVB against exact quantities.

- the discriminator, trained alone against a fixed Gaussian q, converges to the exact
  log q(z|x) - log p(z) on held-out z (and, with the adaptive contrast, starts near it);
- with the exact log-ratio in place of T, avb's loss and gradients are the VAE's and iwavb's are
  IWAE's; with log q's parameters frozen (an optimal T held fixed), the encoder's gradient is STL's;
- iwavb trains an implicit encoder and the decoder of a linear-Gaussian model: the exact log p(x) of
  the training data rises;
- binding and evaluation refuse what they cannot do."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from deepem.evaluation import iw_log_likelihood
from deepem.inference.distributions import DensityUnavailableError, Implicit
from deepem.methods import make_method
from deepem.methods.avb import AVB
from deepem.methods.base import PHI, THETA, IncompatibleModelError
from deepem.methods.discriminator import DISCRIMINATOR, Contrast
from deepem.models import (
    DeepLatentModel,
    Encoder,
    GaussianEncoder,
    ImplicitEncoder,
    ModelConfig,
    make_model,
    standard_normal_log_prob,
)
from deepem.models.linear_gaussian import exact_log_marginal, linear_gaussian_model, set_encoder_to_posterior

DATA_DIM, LATENTS = 4, 2


#: q's correlation between the two latents (z = μ(x) + σ(x) ⊙ (L ε)): a diagonal contrast misses it
CHOLESKY = torch.tensor([[1.0, 0.0], [0.8, 0.6]], dtype=torch.float64)


def linear_gaussian_data(n: int, seed: int):
    """A linear-Gaussian model with q set to its posterior (diagonal part), and n points drawn from it."""
    g = torch.Generator().manual_seed(seed)
    model = linear_gaussian_model(DATA_DIM, LATENTS, noise_std=0.5, generator=g)
    set_encoder_to_posterior(model)
    with torch.no_grad():
        x = model.decoder(torch.randn(n, LATENTS, generator=g, dtype=torch.float64))
        x += 0.5 * torch.randn(n, DATA_DIM, generator=g, dtype=torch.float64)
    return model, x


class CorrelatedSampler(Encoder):
    """A known Gaussian q seen as an implicit one: z = μ(x) + σ(x) ⊙ (L ε), samples only, no density
    for the method; the test knows q = N(μ, diag(σ) L L^T diag(σ)) exactly."""

    has_log_prob = False

    def __init__(self, gaussian: GaussianEncoder) -> None:
        super().__init__()
        self.gaussian, self.noise_dim = gaussian, LATENTS

    def distribution(self, x: torch.Tensor) -> Implicit:
        mean, std = self.gaussian(x)
        return Implicit(lambda eps: mean + std * (eps @ CHOLESKY.T), x.shape[0], self.noise_dim, x)

    def exact(self, x: torch.Tensor) -> MultivariateNormal:
        mean, std = self.gaussian(x)
        return MultivariateNormal(mean, scale_tril=std[:, :, None] * CHOLESKY)


def fixed_implicit_q(n: int = 32):
    """The linear-Gaussian decoder with a fixed implicit q whose log q(z|x) the test knows."""
    lg, x = linear_gaussian_data(n, seed=0)
    encoder = CorrelatedSampler(lg.encoder)
    return DeepLatentModel(lg.decoder, lg.likelihood, encoder, LATENTS, DATA_DIM), x, encoder


def train_discriminator(method: AVB, steps: list[int], lr: float = 1e-2) -> list[float]:
    """Adam on T's loss alone (q fixed); the mean absolute error of the estimated log q/p(z) on 200
    held-out draws per point from q, after each number of steps in `steps`."""
    model, x, encoder = fixed_implicit_q()
    method.bind(model)
    z = model.encode(x).sample(200, torch.Generator().manual_seed(5))
    with torch.no_grad():
        exact = encoder.exact(x).log_prob(z) - model.log_prior(z)
    opt = torch.optim.Adam(method.extra_parameter_groups()[DISCRIMINATOR], lr=lr)
    errors = []
    for step in range(max(steps) + 1):
        if step in steps:
            with torch.no_grad():
                estimate = method.log_ratio(model, x, z, method.contrast(model.encode(x)))
            errors.append(float((estimate - exact).abs().mean()))
        opt.zero_grad()
        method.discriminator_loss(model, x).backward()
        opt.step()
    return errors


def test_the_discriminator_converges_to_the_exact_log_ratio():
    """T(x, z) -> log q(z|x) - log p(z) (eq. 2.14's optimum) on held-out z ~ q; the log-ratio itself
    averages about 2 nats over these z."""
    torch.manual_seed(1)
    method = make_method("avb", particles=8, discriminator_hidden=[32, 32])
    errors = train_discriminator(method, [0, 50, 100, 200, 400])
    print("discriminator |T - log q/p| vs steps 0/50/100/200/400:", [round(e, 3) for e in errors])
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False))
    assert errors[0] > 1.5 and errors[-1] < 0.25


def test_adaptive_contrast_converges_to_the_exact_log_ratio():
    """With the contrast, the closed-form log r/p(z) carries most of the ratio and T learns the rest,
    log q/r (q's correlation, which the diagonal r misses), from a far better start."""
    torch.manual_seed(1)
    method = make_method("avb", particles=8, discriminator_hidden=[32, 32], adaptive_contrast=True)
    errors = train_discriminator(method, [0, 50, 100, 200, 400])
    print("adaptive contrast |T - log q/p| vs steps 0/50/100/200/400:", [round(e, 3) for e in errors])
    assert errors[0] < 1.0 and errors[1] < errors[0] / 3 and errors[-1] < 0.2


def nonlinear_model() -> DeepLatentModel:
    torch.manual_seed(0)
    return make_model(ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli"), 6).double()


def binary_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.full((5, 6), 0.4, dtype=torch.float64), generator=g)


def losses_and_grads(method, model, x, seed: int = 7):
    """The θ/φ loss of `method` and its gradients in θ and in φ, from the same random draws."""
    torch.manual_seed(seed)
    out = method(model, x)
    loss = out.losses[THETA]
    assert out.losses[PHI] is loss
    g_theta = torch.autograd.grad(loss, model.generative_parameters(), retain_graph=True)
    g_phi = torch.autograd.grad(loss, model.encoder_parameters())
    return loss.detach(), g_theta, g_phi


def assert_same(a, b):
    loss_a, theta_a, phi_a = a
    loss_b, theta_b, phi_b = b
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-12, atol=1e-12)
    for ga, gb in zip(theta_a + phi_a, theta_b + phi_b, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ours,reference,k", [("avb", "vae", 1), ("avb", "vae", 3), ("iwavb", "iwae", 5)])
def test_the_exact_log_ratio_in_place_of_t_gives_the_vae_and_iwae(ours, reference, k):
    """log p(x|z) - (log q(z|x) - log p(z)) = log w: same draws, same loss, same θ- and φ-gradients."""
    model, x = nonlinear_model(), binary_batch()
    method = make_method(ours, particles=k)
    method.bind(model)
    method.exact_log_ratio = lambda x_obs, z: model.encode(x_obs).log_prob(z) - model.log_prior(z)
    assert_same(losses_and_grads(method, model, x), losses_and_grads(make_method(reference, particles=k), model, x))


class ExactContrastT(nn.Module):
    """The exact optimum of T under the adaptive contrast r = N(mean, std^2): log q(z|x) - log r(z|x)
    as a function of the normalised z̃ = (z - mean)/std (the Jacobian of z̃ -> z cancels in the ratio)."""

    def __init__(self, model: DeepLatentModel, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, x_obs: torch.Tensor, z_tilde: torch.Tensor) -> torch.Tensor:
        z = self.mean + self.std * z_tilde
        return (self.model.encode(x_obs).log_prob(z) + self.std.log().sum(-1)
                - standard_normal_log_prob(z_tilde))


@pytest.mark.parametrize("ours,reference,k", [("avb", "vae", 2), ("iwavb", "iwae", 4)])
def test_adaptive_contrast_with_its_exact_t_gives_the_vae_and_iwae_for_any_contrast(ours, reference, k):
    """log q - log p = (log q - log r) + (log r - log p) for any r: with T exact for a deliberately
    wrong contrast (shifted mean, widened std), the closed-form term restores the VAE's and IWAE's loss
    and gradients exactly; the contrast's mean and std carry no gradient."""
    model, x = nonlinear_model(), binary_batch()
    method = make_method(ours, particles=k, adaptive_contrast=True)
    method.bind(model)
    with torch.no_grad():
        q = model.encode(x)
        mean, std = q.loc + 0.3, 1.5 * q.std
    method.contrast = lambda q_, generator=None: Contrast(mean, std)
    method.discriminator = ExactContrastT(model, mean, std)
    assert_same(losses_and_grads(method, model, x), losses_and_grads(make_method(reference, particles=k), model, x))


def test_an_optimal_t_held_fixed_gives_the_sticking_the_landing_gradient():
    """T* = log q - log p with q's parameters frozen (as T's are for the encoder's update): the
    encoder's gradient flows through z only, which is IWAE-STL's (Roeder et al. 2017), and θ's is IWAE's."""
    model, x = nonlinear_model(), binary_batch()
    method = make_method("iwavb", particles=4)
    method.bind(model)
    method.exact_log_ratio = lambda x_obs, z: model.encode(x_obs).detach().log_prob(z) - model.log_prior(z)
    ours = losses_and_grads(method, model, x)
    stl = losses_and_grads(make_method("iwae-stl", particles=4), model, x)
    iwae = losses_and_grads(make_method("iwae", particles=4), model, x)
    torch.testing.assert_close(ours[0], iwae[0], rtol=1e-12, atol=1e-12)
    for ga, gb in zip(ours[1] + ours[2], iwae[1] + stl[2], strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)
    assert any((ga - gb).abs().max() > 1e-6 for ga, gb in zip(ours[2], iwae[2], strict=True))


def test_losses_groups_and_diagnostics():
    model, x = nonlinear_model(), binary_batch()
    method = make_method("iwavb", particles=3)
    method.bind(model)
    assert method.loss_groups == (THETA, PHI, DISCRIMINATOR)
    t_params = method.extra_parameter_groups()[DISCRIMINATOR]
    assert method.discriminator.net[0].in_features == 6 + 3 and method.discriminator.net[0].out_features == 8
    out = method(model, x)
    # T's loss reaches ω only: z is detached for it
    assert all(g is None for g in torch.autograd.grad(out.losses[DISCRIMINATOR], model.encoder_parameters(),
                                                      retain_graph=True, allow_unused=True))
    assert all(g is not None for g in torch.autograd.grad(out.losses[DISCRIMINATOR], t_params, retain_graph=True))
    # the bound's loss reaches θ, φ (through z) and ω; the trainer differentiates it for θ and φ only
    assert all(g is not None for g in torch.autograd.grad(out.losses[PHI], model.encoder_parameters()))
    assert set(out.diagnostics) >= {"bound_estimate", "kl_estimate", "discriminator_accuracy", "discriminator_loss"}
    assert all(v.dim() == 0 and not v.requires_grad for v in out.diagnostics.values())
    contrast = make_method("iwavb", adaptive_contrast=True).contrast(model.encode(x))
    assert not contrast.mean.requires_grad and not contrast.std.requires_grad
    assert AVB.default_optim == {THETA: {"lr": 5e-5}, PHI: {"lr": 5e-5}, DISCRIMINATOR: {"lr": 1e-4, "steps": 1}}
    assert make_method("avb").particles == 1 and make_method("iwavb").particles == 5


def implicit_linear_gaussian():
    """Data from a linear-Gaussian model; a second, random one with an implicit encoder to train."""
    truth, x = linear_gaussian_data(64, seed=3)
    g = torch.Generator().manual_seed(4)
    start = linear_gaussian_model(DATA_DIM, LATENTS, noise_std=1.0, generator=g)
    torch.manual_seed(5)
    encoder = ImplicitEncoder(DATA_DIM, LATENTS, hidden=[16], noise_dim=4).double()
    model = DeepLatentModel(start.decoder, start.likelihood, encoder, LATENTS, DATA_DIM)
    return model, x, truth


@pytest.mark.parametrize("adaptive_contrast", [False, True])
def test_iwavb_raises_the_exact_log_likelihood_of_a_linear_gaussian_model(adaptive_contrast):
    model, x, truth = implicit_linear_gaussian()
    torch.manual_seed(6)
    method = make_method("iwavb", particles=5, discriminator_hidden=[32, 32], adaptive_contrast=adaptive_contrast)
    method.bind(model)
    groups = {THETA: model.generative_parameters(), PHI: model.encoder_parameters(),
              **method.extra_parameter_groups()}
    opts = {name: torch.optim.Adam(params, lr=3e-3 if name != DISCRIMINATOR else 1e-2)
            for name, params in groups.items()}
    before = float(exact_log_marginal(model, x).mean().detach())
    for _ in range(300):
        out = method(model, x)
        for name, loss in out.losses.items():
            opts[name].zero_grad()
            loss.backward(inputs=groups[name], retain_graph=True)
        for opt in opts.values():
            opt.step()
    after = float(exact_log_marginal(model, x).mean().detach())
    best = float(exact_log_marginal(truth, x).mean().detach())
    print(f"adaptive contrast {adaptive_contrast}: exact log p(x): before {before:.3f}, after {after:.3f} "
          f"(the data's own model: {best:.3f}); "
          f"bound estimate {float(out.diagnostics['bound_estimate']):.3f}, "
          f"discriminator accuracy {float(out.diagnostics['discriminator_accuracy']):.3f}")
    assert after > before + 1.0 and after > best - 0.5


def test_bind_refuses_discrete_latents_and_iw_evaluation_refuses_an_implicit_q():
    sbn = make_model(ModelConfig(latent_dim=3, hidden=[4], likelihood="bernoulli",
                                                  latent="bernoulli"), 5)
    for name in ("avb", "iwavb"):
        with pytest.raises(IncompatibleModelError, match=r"continuous latents; a reparameterisable q\(z\|x\)"):
            make_method(name).bind(sbn)
    model, x, _ = implicit_linear_gaussian()
    make_method("iwavb").bind(model)  # an implicit q is what these methods are for
    with pytest.raises(DensityUnavailableError, match="--estimator ais --ais-initial prior"):
        iw_log_likelihood(model, x, 10)


def test_a_checkpointed_method_restores_its_discriminator_and_contrast_noise():
    """T and the contrast's fixed noise are state of the method: a fresh method bound to the same model
    and loaded from the state dict gives the same losses."""
    model, x, _ = implicit_linear_gaussian()
    torch.manual_seed(8)
    first = make_method("iwavb", particles=3, adaptive_contrast=True)
    first.bind(model)
    assert set(first.state_dict()) >= {"contrast_noise", "discriminator.net.0.weight"}
    torch.manual_seed(9)
    second = make_method("iwavb", particles=3, adaptive_contrast=True)
    second.bind(model)
    second.load_state_dict(first.state_dict())
    outs = []
    for method in (first, second):
        torch.manual_seed(10)
        outs.append(method(model, x).losses)
    assert all(torch.equal(outs[0][g], outs[1][g]) for g in (THETA, DISCRIMINATOR))
