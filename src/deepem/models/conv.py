"""Convolutional encoder and decoder for 28x28 single-channel images, the gated convolutional networks
of Tomczak & Welling (2017, "VAE with a VampPrior", AISTATS; the "convHVAE" of their experiments and
released code), to which the IWEM paper (Kim et al., sec. 5) refers for its CNN. Their model has two
stochastic layers; this is its one-stochastic-layer form with Gaussian latents (50 by default):

encoder q(z | x), their q(z2 | x) network; every layer a gated convolution (below):
    1x28x28 -> 32 ch, 7x7, stride 1, pad 3 -> 32 ch, 3x3, stride 2, pad 1 (14x14)
            -> 64 ch, 5x5, stride 1, pad 2 -> 64 ch, 3x3, stride 2, pad 1 (7x7)
            -> 6 ch, 3x3, stride 1, pad 1 -> flatten (294)
            -> mean: linear 294 -> Dz;  log variance: linear 294 -> Dz, hardtanh to [-6, 2]
decoder p(x | z), their p(x | z1, z2) network fed by z alone:
    z -> gated dense Dz -> 784, reshaped 1x28x28
      -> four gated convolutions of 64 channels, 3x3, stride 1, pad 1
      -> 1x1 convolution to C channels (C = 1 Bernoulli logits; 2 = mean and log std of a Gaussian)
      -> flatten (C x 784) plus a learnable per-pixel bias (started at the data mean, Burda et al.)
A gated layer is h(x) * sigmoid(g(x)) with two parallel convolutions (or linear maps) h and g
(Dauphin et al. 2017, used throughout Tomczak & Welling's networks). The paper's output sigmoid
becomes the Bernoulli likelihood's logits here.

Shapes: the encoder takes (..., 784) and the decoder (..., Dz), particle dimension first; leading
dimensions are flattened for the convolutions and restored after, so K particles of B points are one
batched call of K * B images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from deepem.inference.distributions import DiagonalGaussian
from deepem.models.encoders import Encoder
from deepem.models.networks import full_precision, network_region

SIDE = 28
IMAGE_DIM = SIDE * SIDE
#: (out channels, kernel, stride, padding) of the encoder's gated convolutions (Tomczak & Welling 2017)
ENCODER_LAYERS = ((32, 7, 1, 3), (32, 3, 2, 1), (64, 5, 1, 2), (64, 3, 2, 1), (6, 3, 1, 1))
DECODER_CHANNELS = 64
DECODER_DEPTH = 4
#: log-variance range of q (their hardtanh(-6, 2))
LOG_VAR_RANGE = (-6.0, 2.0)


def check_image_dim(data_dim: int) -> None:
    """Refuse data that are not 28x28 images flattened to 784 values."""
    if data_dim != IMAGE_DIM:
        raise ValueError(f"the conv architecture takes 28x28 images flattened to {IMAGE_DIM} values; this "
                         f"data has {data_dim} dimensions. Use architecture 'mlp' (or 'mlp-2layer') for it")


class GatedConv2d(nn.Module):
    """h(x) * sigmoid(g(x)), h and g two convolutions of the same shape (Dauphin et al. 2017)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.h = nn.Conv2d(in_ch, out_ch, kernel, stride, padding)
        self.g = nn.Conv2d(in_ch, out_ch, kernel, stride, padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


class GatedLinear(nn.Module):
    """h(x) * sigmoid(g(x)) with two linear maps (the "GatedDense" layer of Tomczak & Welling)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.h = nn.Linear(in_dim, out_dim)
        self.g = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def _conv_output_side(layers: Sequence[tuple[int, int, int, int]], side: int = SIDE) -> int:
    for _, kernel, stride, padding in layers:
        side = (side + 2 * padding - kernel) // stride + 1
    return side


class ConvEncoder(Encoder):
    """q(z | x) = N(mean(x), diag exp(log_var(x))) from gated convolutions (see the module notes).
    Gradient flows to every convolution and to both output maps."""

    diagonal_q = True

    def __init__(self, latent_dim: int = 50, layers: Sequence[tuple[int, int, int, int]] = ENCODER_LAYERS) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        convs, in_ch = [], 1
        for out_ch, kernel, stride, padding in layers:
            convs.append(GatedConv2d(in_ch, out_ch, kernel, stride, padding))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        features = in_ch * _conv_output_side(layers) ** 2  # 6 x 7 x 7 = 294 for the default layers
        self.mean = nn.Linear(features, latent_dim)
        self.log_var = nn.Linear(features, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) for x shaped (..., 784), each (..., Dz)."""
        if x.shape[-1] != IMAGE_DIM:
            raise ValueError(f"the conv encoder takes 28x28 images flattened to {IMAGE_DIM} values, got data "
                             f"shaped {tuple(x.shape)}")
        lead = x.shape[:-1]
        with network_region(x):  # products in the reduced type under mixed precision, outputs float32
            h = self.convs(x.reshape(-1, 1, SIDE, SIDE)).flatten(1)
            log_var, mean = full_precision(self.log_var(h)), full_precision(self.mean(h))
        log_var = torch.clamp(log_var, *LOG_VAR_RANGE)  # hardtanh(-6, 2)
        std = torch.exp(0.5 * log_var)
        return mean.reshape(*lead, -1), std.reshape(*lead, -1)

    def distribution(self, x: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(*self(x))


class ConvDecoder(nn.Module):
    """z (..., Dz) -> likelihood parameters (..., out_features), out_features a multiple of 784 (one
    28x28 map per parameter). Gradient flows to every layer, the per-pixel bias and z."""

    def __init__(self, latent_dim: int, out_features: int, channels: int = DECODER_CHANNELS,
                 depth: int = DECODER_DEPTH) -> None:
        super().__init__()
        if out_features % IMAGE_DIM:
            raise ValueError(f"the conv decoder outputs whole 28x28 maps; {out_features} outputs are not a "
                             f"multiple of {IMAGE_DIM}")
        self.latent_dim = latent_dim
        self.dense = GatedLinear(latent_dim, IMAGE_DIM)
        layers, in_ch = [], 1
        for _ in range(depth):
            layers.append(GatedConv2d(in_ch, channels, 3, 1, 1))
            in_ch = channels
        self.convs = nn.Sequential(*layers)
        self.out = nn.Conv2d(in_ch, out_features // IMAGE_DIM, 1)
        self.output_bias = nn.Parameter(torch.zeros(out_features))
        #: floats per image of the largest activation (the IW evaluator sizes its particle chunks by it)
        self.widest_activation = max(channels, 1) * IMAGE_DIM

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        with network_region(z):  # products in the reduced type under mixed precision, output float32
            h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, 1, SIDE, SIDE)
            out = full_precision(self.out(self.convs(h)).flatten(1)) + self.output_bias
        return out.reshape(*lead, -1)
