"""Why the `conv` preset does not leave its starting point in a short VAE run (architectures.md, part 2).

    DEEPEM_DATA=... python benchmarks/conv_collapse_probe.py

Three probes on binarized MNIST, batch 20, Adam lr 1e-3, one thread:
  1. how much the decoder's logits depend on z at initialisation, layer by layer (the gated layers
     attenuate the signal: each gate multiplies by about 0.5 and PyTorch's default init shrinks it further);
  2. 200 VAE updates with PyTorch's default init and with Glorot init (the IWEM paper's, sec. 5.1): the
     IW-50 bound on a fixed random 20 test images and the spread of q's means over them;
  3. a deterministic autoencoder x -> E_q[z | x] -> decoder (no sampling, no KL), 100 updates, conv against
     mlp: if conv can reconstruct, its networks are trainable and the VAE's stall is the KL term winning
     while the decoder still ignores z (posterior collapse at the start), not a broken model."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional

from deepem.data.registry import load_dataset
from deepem.evaluation.evaluate import evaluation_subset
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.methods import make_method
from deepem.models import DeepLatentModel, ModelConfig, make_model
from deepem.training.step import TrainStep


def conv_model(train: torch.Tensor, init: str = "default") -> DeepLatentModel:
    torch.manual_seed(0)
    model = make_model(ModelConfig(architecture="conv"), 784, data_mean=train.mean(0))
    if init == "glorot":
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
    return model


@torch.no_grad()
def signal_by_layer(model: DeepLatentModel, n: int = 20) -> list[float]:
    """Std over z ~ N(0, I) of each decoder stage's output, averaged over units."""
    decoder = model.decoder
    h = decoder.dense(torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(0)))
    stds = [float(h.std(0).mean())]
    h = h.reshape(n, 1, 28, 28)
    for layer in decoder.convs:
        h = layer(h)
        stds.append(float(h.std(0).mean()))
    stds.append(float(decoder.out(h).std(0).mean()))
    return stds


def vae_run(train: torch.Tensor, test: torch.Tensor, init: str, steps: int = 200) -> str:
    model = conv_model(train, init)
    step = TrainStep(model, make_method("vae", particles=1), lr=1e-3)
    order = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for i in range(steps):
        step(train[order[i * 20:(i + 1) * 20]])
    seconds = time.perf_counter() - start
    with torch.no_grad():
        ll = iw_log_likelihood(model, test, 50, batch_size=20, seed=0).summary()["log_likelihood"]
        spread = float(model.encode(test).mean.var(0).sum())
    return (f"VAE {steps} updates, {init} init ({seconds:.0f} s): test IW-50 (20 images) {ll:.2f}, "
            f"sum over units of Var_x E_q[z] {spread:.4f}")


def autoencoder_run(train: torch.Tensor, architecture: str, steps: int = 100) -> str:
    torch.manual_seed(0)
    model = make_model(ModelConfig(architecture=architecture), 784, data_mean=train.mean(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for i in range(steps):
        x = train[(i * 20) % train.shape[0]:][:20]
        logits = model.decoder(model.encode(x).mean)
        loss = functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return (f"autoencoder {architecture}, {steps} updates: reconstruction {losses[0]:.1f} -> "
            f"{sum(losses[-10:]) / 10:.1f} nats (mean of the last 10)")


def main() -> None:
    torch.set_num_threads(1)
    data = load_dataset("binarized-mnist", download=False)
    train, test = data.train[:4000], data.test[evaluation_subset(data.test.shape[0], 20)]
    stages = ["dense", "conv1", "conv2", "conv3", "conv4", "1x1 out"]
    for init in ("default", "glorot"):
        stds = signal_by_layer(conv_model(train, init))
        print(f"{init} init, std over z by decoder stage: "
              + ", ".join(f"{s} {v:.4f}" for s, v in zip(stages, stds, strict=True)), flush=True)
    for init in ("default", "glorot"):
        print(vae_run(train, test, init), flush=True)
    for architecture in ("conv", "mlp"):
        print(autoencoder_run(train[:2000], architecture), flush=True)


if __name__ == "__main__":
    main()
