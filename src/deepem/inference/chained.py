"""Distributions over latents in blocks, each block's parameters a network of the block before (see
`inference.distributions` for the interface they share).

ChainedGaussian is a two-block Gaussian chain, a root N(m, diag s^2) and a child drawn from a
diagonal Gaussian whose parameters are a network of the root: the encoder q(z1|x) q(z2|z1) and the
prior p(z2) p(z1|z2) of a model with two stochastic layers (Burda et al. 2015, sec. 5). Its z is one
tensor, the blocks concatenated in the model's order [z1, z2]. ChainedBernoulli is its binary analogue
with any number of blocks, each a factorised Bernoulli whose logits are a network of the block before:
the q(h1|x) q(h2|h1) q(h3|h2) and p(h3) p(h2|h3) p(h1|h2) of a stacked sigmoid belief net (Mnih & Gregor
2014; Mnih & Rezende 2016), z = [h1, h2, h3]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from deepem.inference.capabilities import BINARY, REAL
from deepem.inference.densities import normal_log_density
from deepem.inference.distributions import DiagonalGaussian, FactorisedBernoulli, LatentDistribution


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
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return self._join(r, mean + std * noise)

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
