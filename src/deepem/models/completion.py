"""Completion of partly observed data by the model: x̆ = (x_o, x̆_m) with x̆_m drawn from (or the mean
of) p(x_m | z̆), z̆ ~ q(z | x̃0) (miss-IWEM, Kim et al. section 4.1). Used by the miss-IWEM methods and by
imputation and evaluation with the completed proposal, so it lives with the model."""

from __future__ import annotations

import torch
from torch import Tensor

from deepem.models.lvm import DeepLatentModel

__all__ = ["COMPLETIONS", "completion"]


#: how x̆_m is made: a draw of p(x_m | z̆) (the paper), its mean, or zeros (x̆ = x̃0: MIWAE's proposal)
COMPLETIONS = ("sample", "mean", "zero")


@torch.no_grad()
def completion(model: DeepLatentModel, x: Tensor, mask: Tensor | None,
               generator: torch.Generator | None = None, kind: str = "sample") -> Tensor:
    """x̆ = (x_o, x̆_m): z̆ ~ q(z | x̃0), x̆_m ~ p(x_m | z̆), observed entries kept (section 4.1). No graph;
    missing entries of x are never read. Without a mask, x itself. kind="mean" takes x̆_m = E[x_m | z̆],
    kind="zero" x̆_m = 0 (then q(z | x̆) is MIWAE's q(z | x̃0)); see COMPLETIONS."""
    if kind not in COMPLETIONS:
        raise ValueError(f"unknown completion {kind!r}; choose one of {', '.join(COMPLETIONS)}")
    if mask is None:
        return x
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    if kind == "zero":
        return torch.where(mask, x, zero)
    z = model.encode(x, mask).sample(1, generator)[0]
    out = model.decoder(z)
    fill = model.likelihood.sample(out, generator) if kind == "sample" else model.likelihood.mean(out)
    return torch.where(mask, x, fill)
