"""One optimisation step of any method: each loss is differentiated with respect to its own parameter
group only, and each group has its own optimiser (as in the papers, e.g. REM's separate θ and φ
learning rates). The step knows nothing about what a method computes."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from deepem.methods.base import PHI, THETA, Method, MethodOutput
from deepem.models.lvm import DeepLatentModel


def parameter_groups(model: DeepLatentModel, method: Method) -> dict[str, list[nn.Parameter]]:
    """θ, φ and whatever groups the method owns, restricted to the groups its losses update."""
    groups = {THETA: model.generative_parameters(), PHI: model.encoder_parameters()}
    groups.update(method.extra_parameter_groups())
    missing = [g for g in method.loss_groups if g not in groups]
    if missing:
        raise ValueError(f"method {method.name!r} has losses for unknown parameter groups {missing}")
    return {g: groups[g] for g in method.loss_groups}


def make_optimizers(groups: dict[str, list[nn.Parameter]], lr: float | dict[str, float],
                    eps: float = 1e-4, betas: tuple[float, float] = (0.9, 0.999)
                    ) -> dict[str, torch.optim.Adam]:
    """One Adam per group (eps 1e-4 as in Burda et al. 2015); `lr` may differ per group."""
    rates = lr if isinstance(lr, dict) else dict.fromkeys(groups, lr)
    return {g: torch.optim.Adam(params, lr=rates[g], eps=eps, betas=betas) for g, params in groups.items()}


def backward_losses(losses: dict[str, Tensor], groups: dict[str, list[nn.Parameter]]) -> None:
    """Accumulate into each group's .grad the gradient of that group's loss alone.

    Groups that share one loss tensor (VAE, IWAE) get a single backward pass over all their
    parameters; distinct losses get one pass each, keeping the graph until the last."""
    by_loss: list[tuple[Tensor, list[nn.Parameter]]] = []
    for name, loss in losses.items():
        if name not in groups:
            raise ValueError(f"a loss was returned for parameter group {name!r}, which has no optimiser")
        for entry in by_loss:
            if entry[0] is loss:
                entry[1].extend(groups[name])
                break
        else:
            by_loss.append((loss, list(groups[name])))
    for i, (loss, params) in enumerate(by_loss):
        needing = [p for p in params if p.requires_grad]
        if loss.requires_grad and needing:
            loss.backward(inputs=needing, retain_graph=i < len(by_loss) - 1)


def zero_grads(params: Iterable[nn.Parameter]) -> None:
    for p in params:
        p.grad = None


def method_step(method: Method, model: DeepLatentModel, x: Tensor,
                groups: dict[str, list[nn.Parameter]], optimizers: dict[str, torch.optim.Optimizer],
                ) -> MethodOutput:
    """Compute the method's losses on x, back-propagate each to its group and step every optimiser."""
    for params in groups.values():
        zero_grads(params)
    out = method(model, x)
    backward_losses(out.losses, groups)
    for name in out.losses:
        optimizers[name].step()
    method.after_update()
    return out
