"""The model configuration (`ModelConfig`) and the architecture presets of the papers that its
`architecture` selects; `make_model(config, data_dim)` makes the DeepLatentModel.

| name       | networks (q and p)                                    | latents         | source                    |
| ---------- | ----------------------------------------------------- | --------------- | ------------------------- |
| mlp        | x -200-200- z, tanh MLPs, widths from `hidden` (also  | 50 Gaussian     | Burda et al. 2015         |
|            | a sigmoid belief net or an implicit q)                 | (200 binary)    |                           |
| mlp-2layer | x -200-200- z1 -100-100- z2, tanh MLPs, both ways     | 100 + 50 Gauss. | Burda et al. 2015, sec. 5 |
| conv       | gated convolutions, 28x28 images only                 | 50 Gaussian     | Tomczak & Welling 2017    |
| sbn        | stacked sigmoid belief net, linear (logistic) layers  | 200+200+200     | Mnih & Gregor 2014;       |
|            | both ways, x - h1 - h2 - h3 (`--latent bernoulli`)     | binary          | Mnih & Rezende 2016       |

A builder gets the ModelConfig, the data dimension and the likelihood, and returns the parts of a
DeepLatentModel. `ModelConfig.architecture_options` passes the keyword options of a builder (the
widths of a preset: tiny ones for tests, other ones for experiments); they are saved with the run.

Every preset keeps a latent as ONE tensor (K, B, Dz): two stochastic layers are concatenated,
z = [z1, z2], and declare `latent_layers = (D1, D2)` for per-layer diagnostics."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from deepem.declarations.model import ENCODER_KINDS, ModelSettings
from deepem.errors import InvalidInputError
from deepem.models.conv import ENCODER_LAYERS, ConvDecoder, ConvEncoder, check_image_dim
from deepem.models.encoders import ENCODERS
from deepem.models.hierarchical import FirstLayerDecoder, HierarchicalEncoder, HierarchicalGaussianPrior
from deepem.models.likelihoods import Likelihood, make_likelihood
from deepem.models.lvm import DeepLatentModel, ModelParts
from deepem.models.networks import mlp
from deepem.models.priors import PRIORS
from deepem.models.sbn import SBN_LAYER_SIZES, StackedBernoulliEncoder, StackedBernoulliPrior, check_sizes

#: latent families of the "mlp" architecture: (prior, encoder) of each
LATENTS = {"gaussian": ("normal", "gaussian"), "bernoulli": ("bernoulli", "bernoulli")}
#: latent units when none are given: Burda et al.'s 50 Gaussian latents; the 200-unit sigmoid belief net
#: layer of the NVIL (Mnih & Gregor 2014) and VIMCO (Mnih & Rezende 2016) papers
DEFAULT_LATENT_DIMS = {"gaussian": 50, "bernoulli": 200}
#: Burda et al.'s two stochastic layers (sec. 5): 100 and 50 units, 100-100 deterministic units between
TWO_LAYER_SIZES = (100, 50)
TWO_LAYER_BETWEEN = (100, 100)
#: the ModelConfig.hidden default: the presets other than "mlp" take their own widths from options
DEFAULT_HIDDEN = [200, 200]
#: The defaults for a table (rows of real numbers, Gaussian likelihood on standardised columns), the same for
#: the CLI (`--dataset FILE.csv`, where a setting is not typed) and the scikit-learn estimators: the MIWAE
#: paper's UCI settings (Mattei & Frellsen 2019, its UCI experiments: 3 hidden layers of 128 tanh units, d - 1 latents,
#: K = 20, batches of 64, Adam with rate 1e-3), which the IWEM paper uses for its UCI tables too (Kim et al.,
#: sec. 5: "MLPs with 3 hidden layers (with 128 hidden units) and tanh activations which are used in Mattei and
#: Frellsen"). The image defaults above (Burda et al.) are sized for 784 binary pixels; a table has tens of
#: columns. Keys are settings by name: TrainConfig fields, "model.FIELD", and K as "particles".
#: The budget is in updates (max_iter), not epochs, so a 150-row and a 20 000-row table get the same number of
#: optimiser steps; with it, the held-out-cells stopping rule's settings (STOPPING_DEFAULTS). Both chosen by
#: benchmarks/stopping_sweep.py on the sweep tables (iris, wine-white; results/stopping_sweep.md). The budget
#: stops sooner on a small table: at most max_epochs passes over its rows (a 178-row table fitted for 2000
#: updates, ~700 passes, gave draws far too narrow), the cap chosen by benchmarks/budget_sweep.py on iris and
#: row subsets of white wine for the coverage of the draws' intervals and the imputation error
#: (results/budget_sweep.md). A typed budget (epochs or max_iter) runs without the cap.
#: The method is miwae (IWAE's bound on the observed cells; on a complete table, IWAE itself), the name the
#: estimators record too.
TABLE_DEFAULTS: dict[str, object] = {"method": "miwae", "model.hidden": [128, 128, 128], "model.activation": "tanh",
                                     "particles": 20, "batch_size": 64, "lr": 1e-3, "max_iter": 2000, "max_epochs": 200}
#: The held-out-cells stopping rule of a table: off by default (validation_fraction 0: on the sweep tables it
#: stopped too early, and the fixed budget imputed better); once a validation_fraction is given, its checks
#: come every valid_every_steps updates, the run stops after `patience` checks without a new best (by more
#: than tol), and the best check's parameters are kept. The other three apply only while the rule is on.
STOPPING_DEFAULTS: dict[str, object] = {"validation_fraction": 0.0, "patience": 10, "tol": 0.0,
                                        "valid_every_steps": 50}


def table_latent_dim(data_dim: int) -> int:
    """The table default of latent_dim: d - 1 (MIWAE's UCI setting), at least 1."""
    return max(1, data_dim - 1)


def table_settings(data_dim: int) -> dict[str, object]:
    """The table defaults for a table of `data_dim` columns, latent_dim and the stopping rule included."""
    return {**TABLE_DEFAULTS, **STOPPING_DEFAULTS, "model.latent_dim": table_latent_dim(data_dim)}


@dataclass
class ModelConfig(ModelSettings):
    """The standard model of Burda et al. (2015): 50 latents, 200-200 tanh MLPs, Bernoulli likelihood.

    architecture: a preset below ("mlp", the default and the model above;
        "mlp-2layer", Burda et al.'s two stochastic layers; "conv", Tomczak & Welling's gated CNN;
        "sbn", the stacked 200-200-200 sigmoid belief net of NVIL and VIMCO, with latent "bernoulli").
    architecture_options: keyword options of the preset's builder (e.g. {"layer_sizes": [3, 2],
        "between": [8]} for a tiny mlp-2layer; {"channels": 8} for a narrow conv); saved with the run.
    latent_dim: None = the default (DEFAULT_LATENT_DIMS: 50 Gaussian, 200 binary latents; mlp-2layer:
        the sum of its layers, 150).
    hidden: MLP widths between x and the (first) stochastic layer (mlp, mlp-2layer).
    latent: "gaussian" (N(0, I) prior, diagonal Gaussian q) or "bernoulli" (learnable factorised
        Bernoulli prior and q: a sigmoid belief net; hidden=[] makes its layers linear, as in the papers).
    encoder: "explicit" (q has a density) or "implicit" (z = f(x, ε), Gaussian latents only).
    noise_dim: width of ε for an implicit encoder; None = 32, IWAVB's setting (sec. 5).

    The fields are declared, without torch, in deepem/declarations/model.py (the CLI's flags come from
    there)."""

    def __post_init__(self) -> None:
        if self.latent_dim is None:
            arch = ARCHITECTURES.get(self.architecture, ARCHITECTURES["mlp"])
            self.latent_dim = arch.default_latent_dim(self)

    def validate(self) -> None:
        if not isinstance(self.architecture_options, dict):
            raise ValueError(f"model.architecture_options must be a dict, got {self.architecture_options!r}")
        get_architecture(self.architecture).validate(self)
        if self.latent_dim < 1:
            raise ValueError(f"model.latent_dim must be >= 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"model.hidden widths must be >= 1, got {self.hidden}")
        if self.latent not in LATENTS:
            raise ValueError(f"unknown model.latent {self.latent!r}; choose one of {', '.join(LATENTS)}")
        if self.encoder not in ENCODER_KINDS:
            raise ValueError(f"unknown model.encoder {self.encoder!r}; choose one of {', '.join(ENCODER_KINDS)}")
        if self.encoder == "implicit" and self.latent != "gaussian":
            raise ValueError("an implicit encoder needs continuous latents: use latent 'gaussian' with it")
        if self.noise_dim is not None and self.noise_dim < 1:
            raise ValueError(f"model.noise_dim must be >= 1 or None, got {self.noise_dim}")



Builder = Callable[..., ModelParts]


def family_latent_dim(config: ModelConfig) -> int:
    """The latent family's default size (DEFAULT_LATENT_DIMS)."""
    return DEFAULT_LATENT_DIMS.get(config.latent, DEFAULT_LATENT_DIMS["gaussian"])


def two_layer_sizes(config: ModelConfig) -> tuple[int, int]:
    sizes = tuple(config.architecture_options.get("layer_sizes", TWO_LAYER_SIZES))
    if len(sizes) != 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"mlp-2layer needs layer_sizes of two positive sizes, got {list(sizes)}")
    return int(sizes[0]), int(sizes[1])


def two_layer_latent_dim(config: ModelConfig) -> int:
    """D1 + D2; 0 for malformed layer_sizes, which `check_mlp_2layer` then names."""
    try:
        return sum(two_layer_sizes(config))
    except (TypeError, ValueError):
        return 0


def check_gaussian_explicit(config: ModelConfig) -> None:
    if config.latent != "gaussian" or config.encoder != "explicit":
        raise ValueError(f"architecture {config.architecture!r} has Gaussian latents and an explicit encoder; "
                         "latent 'bernoulli' and encoder 'implicit' need architecture 'mlp'")


def check_mlp(config: ModelConfig) -> None:
    """Every latent family and encoder kind of ModelConfig: nothing more to check."""


def check_mlp_2layer(config: ModelConfig) -> None:
    check_gaussian_explicit(config)
    d1, d2 = two_layer_sizes(config)
    if config.latent_dim != d1 + d2:
        raise ValueError(f"mlp-2layer has {d1} + {d2} = {d1 + d2} latents, so latent_dim must be {d1 + d2} "
                         f"(or None), got {config.latent_dim}; set architecture_options layer_sizes to change "
                         "the layers")


def check_conv(config: ModelConfig) -> None:
    check_gaussian_explicit(config)
    if list(config.hidden) != DEFAULT_HIDDEN:
        raise ValueError("hidden sets MLP widths and does not apply to architecture 'conv'; its channels "
                         "are architecture_options (encoder_layers, channels, depth)")


# --- stacked sigmoid belief net (issue 12) ---------------------------------------------------------
def sbn_sizes(config: ModelConfig) -> tuple[int, ...]:
    return check_sizes(config.architecture_options.get("layer_sizes", SBN_LAYER_SIZES))


def sbn_latent_dim(config: ModelConfig) -> int:
    """D1 + ... + DL; 0 for malformed layer_sizes, which `check_sbn` then names."""
    try:
        return sum(sbn_sizes(config))
    except (TypeError, ValueError):
        return 0


def check_sbn(config: ModelConfig) -> None:
    if config.latent != "bernoulli" or config.encoder != "explicit":
        raise InvalidInputError("architecture 'sbn' has binary latents and an explicit q: add --latent bernoulli "
                                "(model.latent 'bernoulli') and keep the explicit encoder")
    sizes = sbn_sizes(config)
    if config.latent_dim != sum(sizes):
        raise ValueError(f"sbn has {' + '.join(map(str, sizes))} = {sum(sizes)} latents, so latent_dim must be "
                         f"{sum(sizes)} (or None), got {config.latent_dim}; set architecture_options layer_sizes "
                         "to change the layers")
    if list(config.hidden) != DEFAULT_HIDDEN:
        raise ValueError("hidden does not apply to architecture 'sbn' (its layers are linear); put tanh "
                         "layers inside every conditional with architecture_options between")
# --- end stacked sigmoid belief net -------------------------------------------------------------


@dataclass(frozen=True)
class Architecture:
    """A preset: `build(config, data_dim, likelihood, **architecture_options) -> ModelParts`, `check`
    (raise a ValueError for a setting it cannot honour) and `latent_dim` (the default number of latents)."""

    name: str
    description: str  # one line, citing the source
    build: Builder
    check: Callable[[ModelConfig], None]
    latent_dim: Callable[[ModelConfig], int] = family_latent_dim

    def options(self) -> list[str]:
        """The keyword options `architecture_options` may set."""
        params = list(inspect.signature(self.build).parameters.values())[3:]
        return [p.name for p in params]

    def default_latent_dim(self, config: ModelConfig) -> int:
        return self.latent_dim(config)

    def validate(self, config: ModelConfig) -> None:
        """Raise a ValueError naming a setting this architecture cannot honour."""
        unknown = sorted(set(config.architecture_options) - set(self.options()))
        if unknown:
            allowed = ", ".join(self.options()) or "none"
            raise ValueError(f"unknown architecture_options {unknown} for architecture {self.name!r}; "
                             f"its options: {allowed}")
        self.check(config)


def build_mlp(config: ModelConfig, data_dim: int, likelihood: Likelihood) -> ModelParts:
    """Today's default model: one stochastic layer, `hidden` tanh MLPs (Burda et al. 2015), or a sigmoid
    belief net / an implicit q as `latent` and `encoder` say. Built in the order of the original code
    (decoder, encoder, prior), so seeded initial weights are unchanged."""
    decoder = mlp(config.latent_dim, config.hidden, likelihood.out_features(data_dim), config.activation)
    prior_name, encoder_name = LATENTS[config.latent]
    if config.encoder == "implicit":
        encoder = ENCODERS["implicit"](data_dim, config.latent_dim, config.hidden, config.activation,
                                       noise_dim=config.noise_dim)
    else:
        encoder = ENCODERS[encoder_name](data_dim, config.latent_dim, config.hidden, config.activation)
    return ModelParts(decoder, encoder, PRIORS[prior_name](config.latent_dim), (config.latent_dim,),
                      decoder.head.bias)


def build_mlp_2layer(config: ModelConfig, data_dim: int, likelihood: Likelihood,
                     layer_sizes: Sequence[int] = TWO_LAYER_SIZES,
                     between: Sequence[int] = TWO_LAYER_BETWEEN) -> ModelParts:
    """Burda et al. (2015, sec. 5) with two stochastic layers: `hidden` (200-200) tanh units between
    x and z1 and `between` (100-100) between z1 and z2, in the generative model (p(z1 | z2), p(x | z1))
    and the encoder (q(z1 | x), q(z2 | z1)) alike; p(z2) = N(0, I)."""
    d1, d2 = (int(s) for s in layer_sizes)
    net = mlp(d1, config.hidden, likelihood.out_features(data_dim), config.activation)
    decoder = FirstLayerDecoder(net, d1)
    encoder = HierarchicalEncoder(data_dim, (d1, d2), config.hidden, between, config.activation)
    prior = HierarchicalGaussianPrior((d1, d2), between, config.activation)
    return ModelParts(decoder, encoder, prior, (d1, d2), net.head.bias)


def build_conv(config: ModelConfig, data_dim: int, likelihood: Likelihood,
               encoder_layers: Sequence[Sequence[int]] = ENCODER_LAYERS, channels: int = 64,
               depth: int = 4) -> ModelParts:
    """Gated convolutional encoder and decoder of Tomczak & Welling (2017), one Gaussian stochastic
    layer of `latent_dim` units (see `models.conv`). 28x28 images (784 values) only."""
    check_image_dim(data_dim)
    layers = tuple(tuple(int(v) for v in layer) for layer in encoder_layers)
    decoder = ConvDecoder(config.latent_dim, likelihood.out_features(data_dim), channels, depth)
    encoder = ConvEncoder(config.latent_dim, layers)
    return ModelParts(decoder, encoder, PRIORS["normal"](config.latent_dim), (config.latent_dim,),
                      decoder.output_bias)


def build_sbn(config: ModelConfig, data_dim: int, likelihood: Likelihood,
              layer_sizes: Sequence[int] = SBN_LAYER_SIZES, between: Sequence[int] = ()) -> ModelParts:
    """The stacked sigmoid belief net of NVIL (Mnih & Gregor 2014) and VIMCO (Mnih & Rezende 2016):
    binary layers h1..hL (`layer_sizes`, 200-200-200), each conditional a sigmoid of a linear function of
    the layer before, generative (p(hL), p(h_l | h_{l+1}), p(x | h1)) and recognition (q(h1 | x),
    q(h_{l+1} | h_l)) alike; `between` puts `activation` hidden layers inside every conditional."""
    sizes = check_sizes(layer_sizes)
    net = mlp(sizes[0], between, likelihood.out_features(data_dim), config.activation)
    decoder = FirstLayerDecoder(net, sizes[0])
    encoder = StackedBernoulliEncoder(data_dim, sizes, between, config.activation)
    prior = StackedBernoulliPrior(sizes, between, config.activation)
    return ModelParts(decoder, encoder, prior, sizes, net.head.bias)


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("mlp", "one stochastic layer, tanh MLPs 200-200 (Burda et al. 2015); the default", build_mlp,
                 check_mlp),
    Architecture("mlp-2layer", "two stochastic layers of 100 and 50 units, tanh MLPs 200-200 and 100-100 "
                 "(Burda et al. 2015, sec. 5)", build_mlp_2layer, check_mlp_2layer,
                 latent_dim=two_layer_latent_dim),
    Architecture("conv", "gated convolutional encoder and decoder for 28x28 images, 50 latents (Tomczak & "
                 "Welling 2017, as the IWEM paper uses)", build_conv, check_conv),
    Architecture("sbn", "stacked sigmoid belief net, binary layers 200-200-200 with linear (logistic) "
                 "conditionals both ways, needs --latent bernoulli (Mnih & Gregor 2014; Mnih & Rezende 2016)",
                 build_sbn, check_sbn, latent_dim=sbn_latent_dim),
)}


def get_architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model.architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def describe() -> dict[str, str]:
    """name -> one-line description, for `deepem list`."""
    return {name: a.description for name, a in ARCHITECTURES.items()}


def make_model(config: ModelConfig, data_dim: int, data_mean: Tensor | None = None) -> DeepLatentModel:
    """The model of `config.architecture` for data_dim-dimensional data; with data_mean, the decoder's
    output bias starts at the data mean (Burda et al. 2015)."""
    config.validate()
    likelihood = make_likelihood(config.likelihood or "bernoulli")
    parts = get_architecture(config.architecture).build(config, data_dim, likelihood, **config.architecture_options)
    if data_mean is not None and parts.output_bias is not None:
        likelihood.init_output_bias(parts.output_bias, data_mean)
    return DeepLatentModel(parts.decoder, likelihood, parts.encoder, config.latent_dim, data_dim, parts.prior,
                           parts.latent_layers)
