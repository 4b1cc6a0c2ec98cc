"""Distributions over latents, one per data point: the proposal q(z | x) an encoder returns, and the
start q0 of an AIS chain. They follow torch.distributions (`sample`, `rsample`, `log_prob`,
`has_rsample`) with two differences the estimators need: draws take an explicit `generator` (seeded,
reproducible evaluation), and `n` draws come out particle dimension first, shaped (n, B, Dz).

A distribution says what it can do, and refuses the rest with an error that says why:

| distribution          | sample | rsample | log_prob | support |
| --------------------- | ------ | ------- | -------- | ------- |
| DiagonalGaussian      | yes    | yes     | yes      | real    |
| FactorisedBernoulli   | yes    | no      | yes      | binary  |
| Implicit (z = f(ε))   | yes    | yes     | no       | real    |
| ChainedGaussian       | yes    | yes     | yes      | real    |
| ChainedBernoulli      | yes    | no      | yes      | binary  |

ChainedGaussian is a two-block Gaussian chain, a root N(m, diag s^2) and a child drawn from a
diagonal Gaussian whose parameters are a network of the root: the encoder q(z1|x) q(z2|z1) and the
prior p(z2) p(z1|z2) of a model with two stochastic layers (Burda et al. 2015, sec. 5). Its z is one
tensor, the blocks concatenated in the model's order [z1, z2]. ChainedBernoulli is its binary analogue
with any number of blocks, each a factorised Bernoulli whose logits are a network of the block before:
the q(h1|x) q(h2|h1) q(h3|h2) and p(h3) p(h2|h3) p(h1|h2) of a stacked sigmoid belief net (Mnih & Gregor
2014; Mnih & Rezende 2016), z = [h1, h2, h3].

A method that needs an rsample or a density checks it before training (`methods.base`); these errors
are the last line of defence, so that a wrong gradient is never computed silently."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepem.errors import UserError

LOG_2PI = math.log(2 * math.pi)

REAL = "real"
BINARY = "binary"

# What a method may require of a model (methods.base.Method.requires), and what a model offers.
RSAMPLE = "reparameterised q"
Q_DENSITY = "q density"
CONTINUOUS = "continuous z"
DIAGONAL_Q = "diagonal Gaussian q"


def normal_log_density(value: Tensor, mean: Tensor | float, std: Tensor | None = None, *,
                       log_std: Tensor | None = None) -> Tensor:
    """log N(value; mean, std^2) per element (not summed), from std or from log_std: the one Gaussian
    density of the code base (q, the Gaussian likelihoods and the priors use it)."""
    if log_std is None:
        if std is None:
            raise ValueError("give std or log_std")
        r, log_std = (value - mean) / std, torch.log(std)
    else:
        r = (value - mean) * torch.exp(-log_std)
    return -0.5 * r.pow(2) - log_std - 0.5 * LOG_2PI


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over the last dimension (the special case without parameters)."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)


class DensityUnavailableError(UserError, ValueError):
    """log_prob was asked of a distribution that has no density (an implicit q)."""


class NotReparameterizableError(UserError, ValueError):
    """rsample was asked of a distribution whose draws cannot carry a pathwise gradient (discrete z)."""


class LatentDistribution:
    """Base class: per-point distributions over Dz latents, batch shape (B,)."""

    has_rsample: ClassVar[bool] = False
    has_log_prob: ClassVar[bool] = True
    support: ClassVar[str] = REAL
    description: ClassVar[str] = "distribution"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws per data point, shaped (n, B, Dz), carrying no gradient."""
        raise NotImplementedError

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n reparameterised draws (gradient flows to the parameters), shaped (n, B, Dz)."""
        raise NotReparameterizableError(
            f"a {self.description} q(z|x) has no reparameterised sample: its draws carry no pathwise "
            "gradient; use a score-function or reweighted method (e.g. rws) for such latents"
        )

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z) summed over latents, for z shaped (..., B, Dz): (..., B)."""
        raise DensityUnavailableError(
            f"a {self.description} q(z|x) has no density, so log q(z|x) cannot be evaluated; importance "
            "weights need it. Estimate log p(x) with AIS from the prior instead (--estimator ais "
            "--ais-initial prior)"
        )

    def detach(self) -> LatentDistribution:
        """The same distribution with its parameters cut from the graph (DReG and STL evaluate log q
        with q's parameters held fixed, so that log q depends on φ only through z)."""
        raise NotImplementedError

    @property
    def mean(self) -> Tensor:
        """E[z] per data point, (B, Dz)."""
        raise NotImplementedError


class DiagonalGaussian(LatentDistribution):
    """N(mean, diag(std^2)) per data point; mean and std shaped (B, Dz) (or broadcastable)."""

    has_rsample = True
    support = REAL
    description = "diagonal Gaussian"

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        if mean.shape != std.shape or mean.dim() != 2:
            raise ValueError(f"mean and std must both be shaped (B, Dz), got {tuple(mean.shape)} and "
                             f"{tuple(std.shape)}")
        self.loc, self.std = mean, std

    @property
    def mean(self) -> Tensor:
        return self.loc

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn((n, *self.loc.shape), generator=generator, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.std * eps

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(n, generator)

    def log_prob(self, z: Tensor) -> Tensor:
        return normal_log_density(z, self.loc, self.std).sum(-1)

    def log_prob_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """log q(z) and its gradient in z in closed form (saves AIS a backward pass), no graph."""
        with torch.no_grad():
            return self.log_prob(z), -(z - self.loc) / self.std.pow(2)

    def detach(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.loc.detach(), self.std.detach())

    def scaled(self, factor: float) -> DiagonalGaussian:
        """The same means with every std multiplied by `factor` (a widened proposal)."""
        if factor <= 0:
            raise ValueError(f"a std scale must be > 0, got {factor}")
        return self if factor == 1.0 else DiagonalGaussian(self.loc, self.std * factor)

    def kl_to_standard_normal(self) -> Tensor:
        """KL(q || N(0, I)) per data point, closed form: (B,)."""
        return 0.5 * (self.loc.pow(2) + self.std.pow(2) - 1 - 2 * torch.log(self.std)).sum(-1)


def standard_normal(batch: int, latent_dim: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> DiagonalGaussian:
    """N(0, I) for `batch` data points."""
    zeros = torch.zeros(batch, latent_dim, dtype=dtype, device=device)
    return DiagonalGaussian(zeros, torch.ones_like(zeros))


class FactorisedBernoulli(LatentDistribution):
    """Independent Bernoulli(sigmoid(logits)) latents taking values 0 and 1; logits shaped (B, Dz)."""

    has_rsample = False
    support = BINARY
    description = "factorised Bernoulli"

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    @property
    def mean(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            probs = torch.sigmoid(self.logits).expand(n, *self.logits.shape)
            return torch.bernoulli(probs, generator=generator)

    def log_prob(self, z: Tensor) -> Tensor:
        # log Bern(z | sigmoid(l)) = -BCE(l, z), one fused kernel; expand is a view.
        return -F.binary_cross_entropy_with_logits(self.logits.expand_as(z), z, reduction="none").sum(-1)

    def detach(self) -> FactorisedBernoulli:
        return FactorisedBernoulli(self.logits.detach())

    def kl_to(self, prior_logits: Tensor) -> Tensor:
        """KL(q || Bernoulli(sigmoid(prior_logits))) per data point, closed form: (B,)."""
        p = torch.sigmoid(self.logits)
        log_q1, log_q0 = F.logsigmoid(self.logits), F.logsigmoid(-self.logits)
        log_p1, log_p0 = F.logsigmoid(prior_logits), F.logsigmoid(-prior_logits)
        return (p * (log_q1 - log_p1) + (1 - p) * (log_q0 - log_p0)).sum(-1)


class Implicit(LatentDistribution):
    """z = f(ε), ε ~ N(0, I): a sampler without a density (the implicit encoders of AVB and IWAVB).

    `transform` maps noise shaped (n, B, noise_dim) to latents (n, B, Dz) with gradient to its
    parameters; `batch` and `noise_dim` fix the noise shape."""

    has_rsample = True
    has_log_prob = False
    support = REAL
    description = "implicit (z = f(x, ε))"
    #: draws used for E[z] when a diagnostic asks for the mean
    MEAN_DRAWS: ClassVar[int] = 64

    def __init__(self, transform: Callable[[Tensor], Tensor], batch: int, noise_dim: int,
                 like: Tensor) -> None:
        self.transform, self.batch, self.noise_dim = transform, batch, noise_dim
        self._like = like  # a tensor of the wanted dtype and device

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn((n, self.batch, self.noise_dim), generator=generator, dtype=self._like.dtype,
                           device=self._like.device)

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.transform(self.noise(n, generator))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(n, generator)

    @property
    def mean(self) -> Tensor:
        """A Monte Carlo estimate of E[z] from MEAN_DRAWS draws (there is no closed form)."""
        return self.sample(self.MEAN_DRAWS).mean(0)

    def detach(self) -> Implicit:
        return self  # no density to evaluate with fixed parameters


class ChainedGaussian(LatentDistribution):
    """A root block r ~ N(loc, diag std^2) and a child block c | r ~ N(m(r), diag s(r)^2), with
    (m, s) = conditional(r) from a network: z is the concatenation of the blocks, the root first
    (`root_first=True`: q(z1|x) q(z2|z1), z = [z1, z2]) or last (p(z2) p(z1|z2), z = [z1, z2]).

    rsample draws the root by reparameterisation, then the child given that root, so the pathwise
    gradient reaches the root's parameters, the conditional network's, and (through r) both.
    log_prob(z) = log N(r; loc, std) + log N(c; m(r), s(r)) at the given z.
    detach() cuts the root's parameters and calls the conditional network with its parameters
    detached (torch.func.functional_call): log q then depends on φ only through z, as DReG and STL
    need, while z itself keeps its gradient.
    mean: the mean path (E[r], m(E[r])), with no sampling; E[r] is exact, m(E[r]) equals E[c] when
    m is linear (the linear-Gaussian models) and is a first-order approximation otherwise."""

    has_rsample = True
    support = REAL
    description = "chained Gaussian (two stochastic layers)"

    def __init__(self, root: DiagonalGaussian, conditional: nn.Module, root_first: bool = True,
                 frozen: bool = False) -> None:
        self.root, self.conditional, self.root_first, self.frozen = root, conditional, root_first, frozen
        self.root_dim = root.loc.shape[-1]

    def _child_params(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) of the child block given root values r (..., B, Dr)."""
        if not self.frozen:
            return self.conditional(r)
        params = {k: v.detach() for k, v in self.conditional.named_parameters()}
        return torch.func.functional_call(self.conditional, params, (r,))

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(root block, child block) of z (..., Dz)."""
        if self.root_first:
            return z[..., :self.root_dim], z[..., self.root_dim:]
        child_dim = z.shape[-1] - self.root_dim
        return z[..., child_dim:], z[..., :child_dim]

    def _join(self, r: Tensor, c: Tensor) -> Tensor:
        return torch.cat([r, c] if self.root_first else [c, r], dim=-1)

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r = self.root.rsample(n, generator)
        mean, std = self._child_params(r)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return self._join(r, mean + std * eps)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(n, generator)

    def log_prob(self, z: Tensor) -> Tensor:
        r, c = self.split(z)
        mean, std = self._child_params(r)
        return self.root.log_prob(r) + normal_log_density(c, mean, std).sum(-1)

    def detach(self) -> ChainedGaussian:
        return ChainedGaussian(self.root.detach(), self.conditional, self.root_first, frozen=True)

    @property
    def mean(self) -> Tensor:
        """The mean path (E[r], m(E[r])): see the class notes."""
        r = self.root.loc
        return self._join(r, self._child_params(r)[0])


class ChainedBernoulli(LatentDistribution):
    """Binary blocks b_0, ..., b_{L-1} drawn in order: b_0 ~ Bern(sigmoid(root_logits)), then
    b_{i+1} | b_i ~ Bern(sigmoid(conditionals[i](b_i))), each factorised over its units. z is the
    concatenation of the blocks, in chain order (`root_first=True`: q(h1|x) q(h2|h1) ..., z = [h1, h2, ...])
    or reversed (`root_first=False`: p(hL) p(h_{L-1}|hL) ..., z = [h1, ..., hL] with hL the root).

    root_logits are shaped (B, D0) for a per-point q, or (D0,) for a prior shared by every point.
    `sizes` gives the block widths in chain order. log_prob(z) = sum over blocks of log Bern(b_i; ...)
    at the given z, with gradient to the root logits and every conditional network (z is data: there is
    no rsample). detach() cuts the root logits and calls the conditionals with detached parameters.
    mean: the mean path (sigmoid(root), sigmoid(c_0(E b_0)), ...): exact for b_0, a first-order
    approximation of E[b_i] for later blocks (the per-layer active-unit diagnostic reads it)."""

    has_rsample = False
    support = BINARY
    description = "chained factorised Bernoulli (stacked sigmoid belief net layers)"

    def __init__(self, root_logits: Tensor, conditionals: Sequence[nn.Module], sizes: Sequence[int],
                 root_first: bool = True, frozen: bool = False) -> None:
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) != len(conditionals) + 1 or sizes[0] != root_logits.shape[-1]:
            raise ValueError(f"a chain of {len(conditionals) + 1} blocks needs as many sizes, the first "
                             f"{root_logits.shape[-1]}; got {sizes}")
        self.root_logits, self.conditionals, self.sizes = root_logits, list(conditionals), sizes
        self.root_first, self.frozen = root_first, frozen

    def _logits(self, i: int, b: Tensor) -> Tensor:
        """Logits of block i + 1 given block i's values b."""
        net = self.conditionals[i]
        if not self.frozen:
            return net(b)
        params = {k: v.detach() for k, v in net.named_parameters()}
        return torch.func.functional_call(net, params, (b,))

    def split(self, z: Tensor) -> list[Tensor]:
        """The blocks of z (..., Dz) in chain order."""
        if sum(self.sizes) != z.shape[-1]:
            raise ValueError(f"block sizes {self.sizes} do not add up to the {z.shape[-1]} latents of z")
        order = self.sizes if self.root_first else self.sizes[::-1]
        blocks = list(z.split(list(order), dim=-1))
        return blocks if self.root_first else blocks[::-1]

    def _join(self, blocks: list[Tensor]) -> Tensor:
        return torch.cat(blocks if self.root_first else blocks[::-1], dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            probs = torch.sigmoid(self.root_logits).expand(n, *self.root_logits.shape)
            blocks = [torch.bernoulli(probs, generator=generator)]
            for i in range(len(self.conditionals)):
                blocks.append(torch.bernoulli(torch.sigmoid(self._logits(i, blocks[-1])), generator=generator))
            return self._join(blocks)

    def log_prob(self, z: Tensor) -> Tensor:
        blocks = self.split(z)
        total = FactorisedBernoulli(self.root_logits).log_prob(blocks[0])
        for i, child in enumerate(blocks[1:]):
            total = total + FactorisedBernoulli(self._logits(i, blocks[i])).log_prob(child)
        return total

    def detach(self) -> ChainedBernoulli:
        return ChainedBernoulli(self.root_logits.detach(), self.conditionals, self.sizes, self.root_first,
                                frozen=True)

    @property
    def mean(self) -> Tensor:
        """The mean path: see the class notes."""
        means = [torch.sigmoid(self.root_logits)]
        for i in range(len(self.conditionals)):
            means.append(torch.sigmoid(self._logits(i, means[-1])))
        return self._join(means)


def capabilities(has_rsample: bool, has_log_prob: bool, support: str, diagonal: bool = False
                 ) -> frozenset[str]:
    """The names methods use to state what they require of q and of z (see methods.base);
    `diagonal`: q is one diagonal Gaussian (a proposal whose std can be widened, IWEM)."""
    caps = set()
    if diagonal:
        caps.add(DIAGONAL_Q)
    if has_rsample:
        caps.add(RSAMPLE)
    if has_log_prob:
        caps.add(Q_DENSITY)
    if support == REAL:
        caps.add(CONTINUOUS)
    return frozenset(caps)
