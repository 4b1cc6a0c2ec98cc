"""The training step's precision (the `precision` setting): float32 throughout, or mixed.

| precision           | network products     | output layers | densities, log-weights, weights, optimiser |
| ------------------- | -------------------- | ------------- | ------------------------------------------ |
| `32`                | float32              | float32       | float32                                    |
| `bf16-mixed`        | bfloat16 (autocast)  | bfloat16      | float32                                    |
| `bf16-mixed-head32` | bfloat16 (autocast)  | float32       | float32                                    |
| `16-mixed` (CUDA)   | float16 (autocast)   | float16       | float32, with dynamic loss scaling         |

Mixed precision is autocast inside the networks only (the mlp and conv networks, `models.networks
.networks_in`): their products run in the reduced type and their outputs are cast to float32
(`full_precision`), so that sampling, moment matching (REM's s(z)), log-densities, log-weights,
logsumexp and normalised weights run in float32 as they would without it; the parameters and the
optimiser state stay float32, and the backward pass runs each product in the type its forward pass
used. Evaluation (IW-K, AIS, BDMC) and validation run outside the step, so in float32; a user who
wants them mixed can wrap a call in `mixed_precision(name)`.

Refusals, one line each (a `PrecisionError`): `16-mixed` off CUDA (float16 needs loss scaling, which
is built for CUDA here); a bfloat16 precision on a CPU without native bfloat16 products (AVX512-BF16
or AMX; there bfloat16 products are emulated, with no speed to gain for the accuracy given up: no
silent fall-back, the user asks for `32`); any mixed precision with a float64 model (autocast leaves
float64 alone). A resumed run keeps its precision (the setting is not resumable): the steps already
taken were computed with it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from deepem.declarations.run import PRECISIONS
from deepem.errors import UserError
from deepem.models.networks import NetworkPrecision, networks_in

__all__ = ["PRECISIONS", "Precision", "PrecisionError", "check_precision", "cpu_has_bf16", "make_grad_scaler",
           "mixed_precision", "precision_of"]


class PrecisionError(UserError, ValueError):
    """A precision this device or dtype cannot run; the message says what would."""


@dataclass(frozen=True)
class Precision:
    """name: the setting's value; compute: the autocast type (None: float32 throughout);
    float32_heads: output layers outside autocast; loss_scaling: dynamic loss scaling (float16)."""

    name: str
    compute: torch.dtype | None
    float32_heads: bool = False
    loss_scaling: bool = False

    @property
    def mixed(self) -> bool:
        return self.compute is not None


_PRECISIONS = {
    "32": Precision("32", None),
    "bf16-mixed": Precision("bf16-mixed", torch.bfloat16),
    "bf16-mixed-head32": Precision("bf16-mixed-head32", torch.bfloat16, float32_heads=True),
    "16-mixed": Precision("16-mixed", torch.float16, loss_scaling=True),
}
assert tuple(_PRECISIONS) == PRECISIONS, "declarations/run.py PRECISIONS and this table must agree"


def precision_of(name: str | Precision) -> Precision:
    if isinstance(name, Precision):
        return name
    if name not in _PRECISIONS:
        raise PrecisionError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return _PRECISIONS[name]


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (oneDNN's own test: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_precision(name: str | Precision, device: torch.device | str, dtype: torch.dtype = torch.float32
                    ) -> Precision:
    """The precision, or a PrecisionError naming why it cannot run on `device` with parameters in `dtype`."""
    p = precision_of(name)
    if not p.mixed:
        return p
    kind = torch.device(device).type
    if dtype != torch.float32:
        raise PrecisionError(f"--precision {p.name} needs float32 parameters (--dtype float32), got {dtype}; "
                             "autocast leaves float64 alone")
    if p.loss_scaling and kind != "cuda":
        raise PrecisionError(f"--precision {p.name} runs on CUDA only (float16 with loss scaling); on {kind} "
                             "use --precision bf16-mixed or 32")
    if p.compute == torch.bfloat16 and kind == "cpu" and not cpu_has_bf16():
        raise PrecisionError(f"--precision {p.name}: this CPU has no native bfloat16 products (AVX512-BF16 or "
                             "AMX), so bfloat16 would be emulated; use --precision 32")
    if p.compute == torch.bfloat16 and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError(f"--precision {p.name}: this GPU has no bfloat16; use --precision 16-mixed or 32")
    if kind not in ("cpu", "cuda"):
        raise PrecisionError(f"--precision {p.name} runs on cpu or cuda, not {kind}; use --precision 32")
    return p


def mixed_precision(precision: str | Precision) -> AbstractContextManager[None]:
    """The context a step's forward pass runs in: float32 throughout for `32`; otherwise the networks
    compute in the precision's type (and their output layers in float32 for `bf16-mixed-head32`)."""
    p = precision_of(precision)
    return networks_in(NetworkPrecision(p.compute, p.float32_heads) if p.mixed else None)


def make_grad_scaler(precision: str | Precision, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for float16 (`16-mixed`), None for the other precisions."""
    p = precision_of(precision)
    return torch.amp.GradScaler(torch.device(device).type) if p.loss_scaling else None
