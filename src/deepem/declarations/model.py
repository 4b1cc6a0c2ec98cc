"""The model's settings (models/config.py's ModelConfig derives from `ModelSettings`), declared without
torch; the names of the model registries they choose from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepem.settings import setting

#: models/networks.py ACTIVATIONS, models/likelihoods.py LIKELIHOODS, models/config.py ARCHITECTURES and LATENTS
ACTIVATION_NAMES = ("elu", "gelu", "relu", "softplus", "tanh")
LIKELIHOOD_NAMES = ("bernoulli", "gaussian")
ARCHITECTURE_NAMES = ("conv", "mlp", "mlp-2layer", "sbn")
LATENT_NAMES = ("gaussian", "bernoulli")
#: an encoder with a density, or z = f(x, ε) without one
ENCODER_KINDS = ("explicit", "implicit")


@dataclass
class ModelSettings:
    """The model's settings (see ModelConfig for what each does)."""

    latent_dim: int | None = setting(None, "latent dimension", minimum=1,
                                     shown="50; 200 with --latent bernoulli; 150 with mlp-2layer")
    hidden: list[int] = setting(help="MLP widths, e.g. 200,200", factory=lambda: [200, 200], minimum=1)
    activation: str = setting("tanh", "hidden-layer activation", choices=ACTIVATION_NAMES)
    likelihood: str | None = setting(None, "observation model", choices=LIKELIHOOD_NAMES,
                                     shown="the dataset's, bernoulli for binary images")
    latent: str = setting("gaussian", "gaussian (N(0, I) prior, diagonal Gaussian q) or bernoulli (a sigmoid "
                          "belief net: learnable Bernoulli prior and q; train it with rws, vimco, nvil, wake-sleep)",
                          choices=LATENT_NAMES)
    encoder: str = setting("explicit", "explicit (q has a density) or implicit (z = f(x, eps), no density; "
                           "evaluate with --estimator ais --ais-initial prior)", choices=ENCODER_KINDS)
    noise_dim: int | None = setting(None, "noise dimension of an implicit encoder", minimum=1, shown="32, as IWAVB")
    architecture: str = setting("mlp", "network preset (`deepem list` describes them): mlp-2layer is Burda et "
                                "al.'s two stochastic layers, conv the gated CNN of Tomczak & Welling (28x28 images), "
                                "sbn the 200-200-200 sigmoid belief net of NVIL/VIMCO (with --latent bernoulli)",
                                choices=ARCHITECTURE_NAMES)
    architecture_options: dict[str, Any] = setting(help="keyword options of the preset", factory=dict, flag=False)
