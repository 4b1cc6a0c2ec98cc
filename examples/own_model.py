"""deepem from Python with your own networks and your own data: no CLI, no dataset registry.

    python examples/own_model.py [--out runs/own-model] [--epochs 30]

The data are 4x4 binary "bars" images (each row and each column is on with probability 0.2, plus a
little pixel noise), made here as a plain tensor. The decoder is any nn.Module from latents to the
likelihood's parameters; the encoder is any nn.Module that returns q(z | x) as a distribution object.
The script trains IWAE (K = 10) into a run folder with checkpoints and exact resume, then estimates
log p(x) of held-out images with the importance-weighted bound (K = 1000) before and after training."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from deepem.evaluation import iw_log_likelihood
from deepem.inference.distributions import DiagonalGaussian
from deepem.methods.iwae import IWAE
from deepem.models import MLP, BernoulliLikelihood, DeepLatentModel, Encoder
from deepem.training import TrainConfig, Trainer

SIDE, LATENTS = 4, 4


def bars(n: int, generator: torch.Generator) -> Tensor:
    """n images of SIDE x SIDE binary bars, flattened to vectors."""
    rows = torch.rand(n, SIDE, 1, generator=generator) < 0.2
    cols = torch.rand(n, 1, SIDE, generator=generator) < 0.2
    noise = torch.rand(n, SIDE, SIDE, generator=generator) < 0.02
    return ((rows | cols) ^ noise).float().reshape(n, SIDE * SIDE)


class MyEncoder(Encoder):
    """A small MLP whose output is the mean and log-std of a diagonal Gaussian q(z | x)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(SIDE * SIDE, 32), nn.ReLU(), nn.Linear(32, 2 * LATENTS))

    def distribution(self, x: Tensor) -> DiagonalGaussian:
        mean, log_std = self.body(x).chunk(2, dim=-1)
        return DiagonalGaussian(mean, log_std.exp())


def main(out: str | Path, epochs: int = 30, seed: int = 0, quiet: bool = False) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    train, held_out = bars(2000, gen), bars(500, gen)

    torch.manual_seed(seed)  # the initial weights are part of the run
    # an MLP states its body and its linear output head, which the Bernoulli likelihood may fuse with
    # log p(x | z) on large batches; any nn.Module mapping z to the likelihood's parameters works too
    decoder = MLP(nn.Linear(LATENTS, 32), nn.ReLU(), nn.Linear(32, SIDE * SIDE))
    model = DeepLatentModel(decoder, BernoulliLikelihood(), MyEncoder(), LATENTS, SIDE * SIDE)
    before = iw_log_likelihood(model, held_out, particles=1000, seed=1).mean

    settings = TrainConfig(dataset="bars-4x4", epochs=epochs, batch_size=50, lr=3e-3, seed=seed, valid_every=0)
    trainer = Trainer(model, IWAE(particles=10), train, out, settings, progress=not quiet,
                      log=(lambda s: None) if quiet else print)
    trainer.start()
    trainer.fit()

    after = iw_log_likelihood(model, held_out, particles=1000, seed=1)
    if not quiet:
        print(f"held-out log p(x) ({after.estimator}): {before:.3f} before training, "
              f"{after.mean:.3f} ± {after.stderr:.3f} after; run folder {out}")
    return {"before": before, "after": after.mean, "stderr": after.stderr}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    main(args.out or Path(tempfile.mkdtemp()) / "run", args.epochs)
