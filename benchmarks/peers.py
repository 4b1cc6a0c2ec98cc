"""The same IWAE training step written four ways, for benchmarks/throughput.py and profile_step.py: plain
PyTorch, Pyro and pythae (optional peers: `pip install pyro-ppl pythae`, benchmark-only, not dependencies
of deepem), and deepem's own trainer step. Each factory returns a zero-argument callable that takes one
optimiser step on a fixed batch x, with the 784-200-200-50 tanh MLPs of Burda et al. (2015), a Bernoulli
likelihood, K particles and Adam(lr 1e-3, eps 1e-4). Also K-particle IW evaluation, deepem's and the plain
chunked loop, and the FLOPs of both workloads."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deepem.evaluation.loglik import iw_log_likelihood_batch
from deepem.inference.numerics import flush_denormals
from deepem.methods import make_method
from deepem.models import ModelConfig, make_model
from deepem.training.step import TrainStep

D, H, Z = 784, 200, 50
DECODER_MACS = Z * H + H * H + H * D  # per particle
ENCODER_MACS = D * H + H * H + H * 2 * Z  # per data point
Step = Callable[[], None]


def training_flops(k: int, batch: int) -> int:
    """Matrix-product FLOPs of one training step: forward, and backward at twice the forward."""
    return 3 * 2 * (k * batch * DECODER_MACS + batch * ENCODER_MACS)


def evaluation_flops(k: int, points: int) -> int:
    """Matrix-product FLOPs of K-particle IW evaluation of `points` points (forward only)."""
    return 2 * points * (k * DECODER_MACS + ENCODER_MACS)


def encoder_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(D, H), nn.Tanh(), nn.Linear(H, H), nn.Tanh(), nn.Linear(H, 2 * Z))


def decoder_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(Z, H), nn.Tanh(), nn.Linear(H, H), nn.Tanh(), nn.Linear(H, D))


class PlainIWAE(nn.Module):
    """The reference: IWAE written directly with nn.Linear, no library code at all."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = encoder_net()
        self.dec = decoder_net()

    def log_w(self, x: torch.Tensor, k: int) -> torch.Tensor:
        mu, log_std = self.enc(x).chunk(2, -1)
        eps = torch.randn(k, *mu.shape, device=x.device)
        z = mu + log_std.exp() * eps
        logits = self.dec(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        log_pz = -0.5 * (z**2).sum(-1) - 0.5 * Z * math.log(2 * math.pi)
        log_qz = (-0.5 * eps**2 - log_std).sum(-1) - 0.5 * Z * math.log(2 * math.pi)
        return log_px + log_pz - log_qz

    def loss(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return -(torch.logsumexp(self.log_w(x, k), 0) - math.log(k)).mean()


def deepem_step(x: torch.Tensor, k: int, method: str = "iwae", precision: str = "32") -> Step:
    """deepem's trainer step (training/step.py, non-finite guards included) for any registered method, under
    `precision` (training/precision.py); on CPU the step itself flushes denormals on every thread, as in
    training (inference/denormals.py)."""
    model = make_model(ModelConfig(), D).to(x.device)
    step = TrainStep(model, make_method(method, particles=k), lr=1e-3, precision=precision)
    return lambda: step(x)


def plain_step(x: torch.Tensor, k: int, autocast: torch.dtype | None = None) -> Step:
    """The plain IWAE step; with `autocast` a dtype, its forward pass runs under torch.autocast to it."""
    model = PlainIWAE().to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if autocast is None:
            model.loss(x, k).backward()
        else:
            with torch.autocast(x.device.type, dtype=autocast):
                loss = model.loss(x, k)
            loss.float().backward()
        opt.step()
    return step


def pyro_step(x: torch.Tensor, k: int) -> Step:
    """Pyro's SVI with RenyiELBO(alpha=0): the IWAE bound with K vectorised particles."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, RenyiELBO

    pyro.clear_param_store()
    enc, dec = encoder_net().to(x.device), decoder_net().to(x.device)
    zeros = torch.zeros(Z, device=x.device)

    def model(data: torch.Tensor) -> None:
        pyro.module("decoder", dec)
        with pyro.plate("data", data.shape[0]):
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=dec(z)).to_event(1), obs=data)

    def guide(data: torch.Tensor) -> None:
        pyro.module("encoder", enc)
        mu, log_std = enc(data).chunk(2, -1)
        with pyro.plate("data", data.shape[0]):
            pyro.sample("z", dist.Normal(mu, log_std.exp()).to_event(1))

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3, "eps": 1e-4}),
              RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1))
    return lambda: svi.step(x)


def pythae_step(x: torch.Tensor, k: int) -> Step:
    """pythae's IWAE model (its decoder outputs probabilities, its loss is BCE on them) with torch Adam,
    the optimiser pythae's trainer builds."""
    from pythae.models import IWAE, IWAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = encoder_net()

        def forward(self, data: torch.Tensor) -> ModelOutput:
            mu, log_std = self.net(data).chunk(2, -1)
            return ModelOutput(embedding=mu, log_covariance=2 * log_std)

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = decoder_net()

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    config = IWAEConfig(input_dim=(D,), latent_dim=Z, number_samples=k, reconstruction_loss="bce")
    model = IWAE(config, encoder=Encoder(), decoder=Decoder()).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    batch = {"data": x}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(batch).loss.backward()
        opt.step()
    return step


def deepem_evaluation(x: torch.Tensor, k: int, batch: int) -> Step:
    """deepem's IW log-likelihood of every point of x with K particles, `batch` points at a time, with
    denormals flushed as evaluate_model does."""
    model = make_model(ModelConfig(), D).to(x.device).eval()

    @torch.no_grad()
    def evaluate() -> None:
        with flush_denormals():
            for i in range(0, x.shape[0], batch):
                iw_log_likelihood_batch(model, x[i:i + batch], k)
    return evaluate


def plain_evaluation(x: torch.Tensor, k: int, batch: int, chunk: int = 500) -> Step:
    """The straightforward loop: chunks of particles, all log-weights kept, one logsumexp at the end."""
    model = PlainIWAE().to(x.device).eval()

    @torch.no_grad()
    def evaluate() -> None:
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            torch.logsumexp(torch.cat([model.log_w(xb, chunk) for _ in range(k // chunk)]), 0)
    return evaluate


PEERS: dict[str, Callable[[torch.Tensor, int], Step]] = {"plain": plain_step, "pyro": pyro_step,
                                                         "pythae": pythae_step}


def available_peers() -> dict[str, Callable[[torch.Tensor, int], Step]]:
    """The peers whose libraries are installed (plain PyTorch always)."""
    out = {"plain": plain_step}
    for name, module in (("pyro", "pyro"), ("pythae", "pythae")):
        try:
            __import__(module)
        except ImportError:
            continue
        out[name] = PEERS[name]
    return out
