"""A stacked sigmoid belief net: L stochastic binary layers (Neal 1992), the 200-200-200 SBN of the NVIL
(Mnih & Gregor 2014, sec. 6.2) and VIMCO (Mnih & Rezende 2016, sec. 6.2) papers, kept behind the
one-tensor interface: a latent is one tensor (K, B, D1 + ... + DL) = [h1, ..., hL].

    generative model  p(hL) = Bern(sigmoid(b)),  p(h_l | h_{l+1}) = Bern(sigmoid(W_l h_{l+1} + c_l)),
                      p(x | h1) = Bern(sigmoid(W_0 h1 + c_0))
    encoder           q(h1 | x) = Bern(sigmoid(U_1 x + d_1)),  q(h_{l+1} | h_l) = Bern(sigmoid(U_{l+1} h_l + d_{l+1}))

Every conditional is a sigmoid of a linear function of the layer before (the papers' SBN); `between`
puts tanh hidden layers inside each conditional instead (`between=()` is the linear one).

- `StackedBernoulliPrior`: p(hL) prod_l p(h_l | h_{l+1}); the top logits b and the conditional networks
  belong to θ. Sampling is ancestral, top first (the sleep phase of wake-sleep draws the whole stack).
- `StackedBernoulliEncoder`: q(h1 | x) prod_l q(h_{l+1} | h_l), returning a `ChainedBernoulli`.
- The decoder reads h1 only (`hierarchical.FirstLayerDecoder`).

Which methods fit: q has a density but no rsample and z is binary, so the score-function and
reweighted methods run unchanged (nvil, vimco, rws, wake-sleep), IW evaluation works, and the
reparameterised methods, REM/IWEM and AIS with HMC refuse the model. KL(q || p) has no closed form
here: the diagnostics estimate it by Monte Carlo."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from deepem.inference.capabilities import BINARY
from deepem.inference.chained import ChainedBernoulli
from deepem.models.encoders import Encoder
from deepem.models.networks import mlp
from deepem.models.priors import Prior

#: the papers' SBN: three layers of 200 binary units, no deterministic layers
SBN_LAYER_SIZES = (200, 200, 200)


def check_sizes(layer_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in layer_sizes)
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"a stacked sigmoid belief net needs >= 1 layer of >= 1 unit each, got {list(layer_sizes)}")
    return sizes


class StackedBernoulliPrior(Prior):
    """p(h1, ..., hL) = Bern(hL; sigmoid(logits)) prod_{l<L} Bern(h_l; sigmoid(f_l(h_{l+1}))) over
    z = [h1, ..., hL]. `logits` (DL,) and `conditionals[i]` (the map h_{L-i} -> logits of h_{L-i-1},
    top down) are parameters of θ."""

    support = BINARY
    name = "stacked-bernoulli"

    def __init__(self, layer_sizes: Sequence[int], between: Sequence[int] = (), activation: str = "tanh",
                 init_logit: float = 0.0) -> None:
        sizes = check_sizes(layer_sizes)
        super().__init__(sum(sizes))
        self.layer_sizes = sizes
        self.logits = nn.Parameter(torch.full((sizes[-1],), float(init_logit)))
        top_down = sizes[::-1]
        self.conditionals = nn.ModuleList(mlp(top_down[i], between, top_down[i + 1], activation)
                                          for i in range(len(sizes) - 1))

    def chain(self, logits: Tensor, frozen: bool = False) -> ChainedBernoulli:
        return ChainedBernoulli(logits, self.conditionals, self.layer_sizes[::-1], root_first=False, frozen=frozen)

    def log_prob(self, z: Tensor) -> Tensor:
        return self.chain(self.logits).log_prob(z)

    def per_point(self, batch: int, dtype: torch.dtype, device: torch.device | str | None) -> ChainedBernoulli:
        """The prior for `batch` points as a distribution, parameters detached (as the other priors)."""
        return self.chain(self.logits.detach().to(dtype).expand(batch, -1), frozen=True)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> Tensor:
        """n ancestral draws [h1, ..., hL] shaped (n, Dz), top layer first, without gradient."""
        z = self.chain(self.logits).sample(n, generator)
        return z.to(dtype or self.logits.dtype)


class StackedBernoulliEncoder(Encoder):
    """q(h1 | x) prod_l q(h_{l+1} | h_l): `first` maps x to h1's logits, `conditionals[i]` maps h_{i+1}
    to h_{i+2}'s. `distribution(x)` is a ChainedBernoulli (a density, no rsample)."""

    has_rsample = False
    support = BINARY

    def __init__(self, data_dim: int, layer_sizes: Sequence[int], between: Sequence[int] = (),
                 activation: str = "tanh") -> None:
        super().__init__()
        sizes = check_sizes(layer_sizes)
        self.layer_sizes = sizes
        self.latent_dim = sum(sizes)
        self.first = mlp(data_dim, between, sizes[0], activation)
        self.conditionals = nn.ModuleList(mlp(sizes[i], between, sizes[i + 1], activation)
                                          for i in range(len(sizes) - 1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits of q(h1 | x)."""
        return self.first(x)

    def distribution(self, x: Tensor) -> ChainedBernoulli:
        return ChainedBernoulli(self(x), self.conditionals, self.layer_sizes, root_first=True)
