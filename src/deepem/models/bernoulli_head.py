"""The Bernoulli output head: the decoder's last linear layer and log p(x | z) of a Bernoulli likelihood
as one computation, with the same values to float rounding (`BernoulliLikelihood.log_prob_head` uses it).

The Bernoulli output layer as one computation: log p(x | z) = Σ_d log Bern(x_d | σ(l_d)) with the
logits l = h Wᵀ + b of the decoder's last linear layer, and its gradient.

Why a kernel of its own: on CPU this is the second-largest cost of a training step after the matrix
products (`benchmarks/results/throughput.md`). Written with autograd, the element-wise passes over the
(K, B, D) logits are many: binary_cross_entropy_with_logits forward (a log-sigmoid with a buffer), its
backward (σ again, times the incoming gradient broadcast over D), and the bias gradient's sum. Here:

- with s = 2x − 1 (±1) and t = s·l, log Bern(x | σ(l)) = log σ(t) and its derivative with respect to
  l is s·σ(−t) = s·(1 − σ(t)): one sigmoid and one log serve the value and the gradient;
- the gradient g = s·(1 − σ(t)) is kept from the forward pass (in the logits' own buffer), and the
  backward pass folds the incoming per-particle gradient c (shape (K, B)) into the small operands of
  the matrix products instead of scaling the (K, B, D) tensor: dW = gᵀ (c·h), db = gᵀ c,
  dh = c·(g W). No element-wise pass over (K, B, D) remains in the backward pass.

Accuracy: log σ(t) is computed as log(σ(t)) for t ≥ τ = log(machine epsilon) (−15.9 in float32,
−36.0 in float64), where σ(t) is a normal number with relative error of a few ulps, so the log has an
absolute error of a few ulps. Below τ, log σ(t) = t − log1p(eᵗ) = t to within eᵗ < machine epsilon, so
it is computed as log σ(τ) + (t − τ); the error per entry is below machine epsilon. The gradient's
error is below machine epsilon per entry (σ(t) < ε there). Compared with binary_cross_entropy_with_logits
the summed log-likelihood agrees to float tolerance (tests/inference/test_fused.py)."""


from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.graph import GradientEdge, get_gradient_edge

from deepem.inference.constants import constant


def log_sigmoid_floor(dtype: torch.dtype) -> float:
    """τ below which log σ(t) equals t to machine precision in `dtype`."""
    return math.log(torch.finfo(dtype).eps)


def _signed_logits(h: Tensor, weight: Tensor, bias: Tensor | None, signs: Tensor) -> Tensor:
    """t = s·(h Wᵀ + b), shaped (..., D), in a fresh buffer that the caller may overwrite. The product
    runs in the operands' type (bfloat16 under mixed precision), t in the data's (float32)."""
    flat = h.reshape(-1, h.shape[-1])
    logits = torch.mm(flat, weight.t()) if bias is None else torch.addmm(bias, flat, weight.t())
    return logits.view(*h.shape[:-1], -1).to(signs.dtype).mul_(signs)


def _sum_log_sigmoid_(t: Tensor) -> tuple[Tensor, Tensor]:
    """(Σ_d log σ(t_d), σ(max(t, τ))), overwriting t with the latter (no new (…, D) tensor but the log)."""
    excess = t.sum(-1)
    t.clamp_(min=log_sigmoid_floor(t.dtype))
    excess -= t.sum(-1)  # Σ (t − max(t, τ)): the exact part of log σ below τ
    sig = t.sigmoid_()
    return _sum_log(sig).add_(excess), sig


#: entries multiplied together before one log: σ(τ)^G must stay a normal number (float32: 5 at most)
LOG_GROUP = {torch.float32: 4, torch.float64: 4}


def _sum_log(p: Tensor) -> Tensor:
    """Σ_d log p_d for p in [σ(τ), 1], as Σ log of products of G entries: a log costs about as much as
    the sigmoid and the product of G entries stays a normal number, so this is G times fewer logs for a
    relative error of a few ulps per product."""
    d, g = p.shape[-1], LOG_GROUP.get(p.dtype, 1)
    m = d // g
    if g == 1 or m == 0:
        return torch.log(p).sum(-1)
    product = p[..., :m] * p[..., m:2 * m]
    for i in range(2, g):
        product.mul_(p[..., i * m:(i + 1) * m])
    total = torch.log_(product).sum(-1)
    if d > g * m:
        total += torch.log(p[..., g * m:]).sum(-1)
    return total


def _edge(t: Tensor | None) -> GradientEdge | None:
    return get_gradient_edge(t) if t is not None and t.requires_grad else None


def _will_run(edge: GradientEdge | None) -> bool:
    """Whether the current backward pass needs the gradient along `edge`. A method that
    differentiates θ's and φ's losses separately (IWEM, REM, RWS) runs one pass per loss, each with
    `inputs=` its own group: the φ pass must not pay for dW, the decoder's largest product. Built-in
    nodes skip unneeded outputs this way; a custom Function has to ask (private API, hence the guard)."""
    if edge is None:
        return False
    try:
        return bool(torch._C._will_engine_execute_node(edge.node))
    except (AttributeError, RuntimeError):
        return True


class _BernoulliLinear(torch.autograd.Function):
    """Autograd for (h, W, b) ↦ Σ_d log Bern(x_d | σ((h Wᵀ + b)_d)); `signs` = 2x − 1 is data."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None, signs: Tensor) -> Tensor:
        t = _signed_logits(h, weight, bias, signs)
        log_lik, sig = _sum_log_sigmoid_(t)
        grad_logits = sig.mul_(signs).neg_().add_(signs)  # s·(1 − σ(t)), in place of σ(t)
        # kept in the product's type: under mixed precision the backward products run in bfloat16 too
        ctx.save_for_backward(h, weight, grad_logits.to(weight.dtype))
        ctx.edges = (_edge(h), _edge(weight), _edge(bias))
        return log_lik

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        h, weight, grad_logits = ctx.saved_tensors
        g = grad_logits.reshape(-1, grad_logits.shape[-1])  # (N, D)
        # (N, 1): the incoming gradient of each particle's log-likelihood, in the products' type
        c = grad.reshape(-1, 1).to(weight.dtype)
        flat_h = h.reshape(-1, h.shape[-1])
        need_h, need_weight, need_bias = (_will_run(edge) for edge in ctx.edges)
        d_h = torch.mm(g, weight).mul_(c).view(h.shape) if need_h else None
        d_weight = torch.mm(g.t(), flat_h * c) if need_weight else None
        d_bias = torch.mv(g.t(), c.flatten()) if need_bias else None
        return d_h, d_weight, d_bias, None


def _autocast_dtype(h: Tensor) -> torch.dtype | None:
    """The type autocast computes products in on h's device, where it is on (and h a float32 tensor)."""
    device = h.device.type
    if h.dtype != torch.float32 and h.dtype not in (torch.bfloat16, torch.float16):
        return None  # float64: autocast leaves it alone
    if not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


#: logits with fewer entries than this take the composite form (BCE with logits)
FUSED_MIN_NUMEL = 150_000


def bernoulli_linear_log_prob(x: Tensor, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Σ_d log Bern(x_d | σ(l_d)) with l = h Wᵀ + b: x (B, D) binary, h (..., B, H) → (..., B).

    Differentiable in h, W and b (first order); without a graph (evaluation) nothing is kept.

    Under autocast (mixed precision, training/precision.py) the product h Wᵀ + b and the backward
    products run in the autocast type, as a plain linear layer's would; the log-sigmoid, its sum and
    the result are in x's type (float32)."""
    low = _autocast_dtype(h)
    if low is not None:  # the operands in the product's type; autograd casts their gradients back
        h, weight = h.to(low), weight.to(low)
        bias = None if bias is None else bias.to(low)
    if torch._C._are_functorch_transforms_active() or h[..., 0].numel() * weight.shape[0] < FUSED_MIN_NUMEL:
        # Under torch.func (vmap, grad: vectorised seeds) the composite form, with a batching rule; on few
        # particles too, where the fused form's dozen small ops and its Python-level autograd node cost more
        # than they save (below FUSED_MIN_NUMEL; the measurement: docs/speed.md, "Thresholds in the code").
        logits = F.linear(h, weight, bias).to(x.dtype)
        return -bernoulli_nll(logits, x.expand_as(logits)).sum(-1)
    signs = torch.add(x, x).sub_(constant(1, x))  # 2x − 1 (inference/constants.py: no number wrapped per call)
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _BernoulliLinear.apply(h, weight, bias, signs)
    return _sum_log_sigmoid_(_signed_logits(h, weight, bias, signs))[0]


def bernoulli_nll(logits: Tensor, target: Tensor) -> Tensor:
    """F.binary_cross_entropy_with_logits(logits, target, reduction="none"); under torch.func transforms
    the same kernel through a Function with a batching rule of its own."""
    if torch._C._are_functorch_transforms_active():
        return _BernoulliNLL.apply(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


class _BernoulliNLL(torch.autograd.Function):
    """The element-wise Bernoulli negative log-likelihood with a vmap rule.

    vmap has no batching rule for binary_cross_entropy_with_logits and decomposes it into about ten
    element-wise passes over the (S, K, B, D) logits (vectorised IWAE at K = 50 then ran at 0.2-0.7 times
    the speed of sequential seeds on CPU). The op is element-wise, so its batched form is the op on the
    whole stacked tensor. Forward is the library's kernel; backward its formula, (σ(l) − x)·grad."""

    @staticmethod
    def forward(logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        logits, target = ctx.saved_tensors
        return (torch.sigmoid(logits) - target) * grad, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, int | None], logits: Tensor, target: Tensor
             ) -> tuple[Tensor, int]:
        def batched_first(t: Tensor, dim: int | None) -> Tensor:
            return t.movedim(dim, 0) if dim is not None else t.expand(info.batch_size, *t.shape)

        logits, target = batched_first(logits, in_dims[0]), batched_first(target, in_dims[1])
        return _BernoulliNLL.apply(logits, target.expand_as(logits)), 0
