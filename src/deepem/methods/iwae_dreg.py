"""IWAE with lower-variance encoder gradients: doubly reparameterised gradients (DReG, Tucker et al.
2018) and sticking the landing (STL, Roeder et al. 2017). The θ-gradient is IWAE's (the snIS estimate
of ∇θ log p(x), REM eq. 10); only φ's estimator changes.

Both evaluate log w_k = log p(x, z_k) - log q(z_k | x) with q's parameters detached
(`stop_q_params=True`), so log w depends on φ only through the reparameterised z_k, and drop the
score-function term of the IWAE gradient:
    IWAE:  sum_k w̃_k ∇φ log w_k                       (total derivative, score term included)
    STL:   sum_k w̃_k   ∂log w_k/∂z_k ∂z_k/∂φ           (biased for K > 1; zero variance at q = p(z|x))
    DReG:  sum_k w̃_k^2 ∂log w_k/∂z_k ∂z_k/∂φ           (unbiased for IWAE's gradient, Tucker et al. eq. 5)
with w̃ = softmax(log w) detached.

One forward and one backward pass, as IWAE: both groups minimise the single surrogate
-sum_k sg(w̃_k) log w_k. Its θ-gradient is IWAE's and its φ-gradient is STL's; for DReG a hook on z
multiplies particle k's gradient by w̃_k, turning w̃_k into w̃_k^2. That is exact because each particle's
terms (prior, decoder, log q) depend on its own z_k only; a decoder that mixed particles (batch
statistics over the particle dimension) would break it, as it would break IWAE's weights.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw, weight_diagnostics
from deepem.methods.weights import coefficient_weights
from deepem.models.lvm import DeepLatentModel


class IWAEDReG(Method):
    """IWAE, with the DReG estimator for φ. Option: `particles` K (default 5, as `iwae`)."""

    name = "iwae-dreg"
    #: power of the normalised weights in the φ surrogate: 2 for DReG, 1 for STL.
    weight_power: ClassVar[int] = 2

    def __init__(self, particles: int = 5) -> None:
        super().__init__(particles)

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        # z reparameterised, log q with q's mean/std detached: log_w carries gradient to θ through
        # log p(x, z) and to φ only through z.
        draws = draw(model, x, self.particles, reparameterize=True, stop_q_params=True, mask=mask, generator=generator)
        log_w = draws.log_w
        w = coefficient_weights(log_w)  # detached coefficients
        if self.weight_power == 2 and draws.z.requires_grad:
            # DReG: scale the path gradient of particle k by one more w̃_k (θ never sees this hook).
            draws.z.register_hook(lambda grad: grad * w.unsqueeze(-1))
        loss = -(w * log_w).sum(0).mean()  # θ: IWAE's gradient; φ: STL's (DReG's with the hook)
        return MethodOutput({THETA: loss, PHI: loss}, weight_diagnostics(log_w), log_w)


class IWAESTL(IWAEDReG):
    """IWAE, with the sticking-the-landing estimator for φ. Option: `particles` K (default 5)."""

    name = "iwae-stl"
    vectorisable = True
    weight_power = 1
