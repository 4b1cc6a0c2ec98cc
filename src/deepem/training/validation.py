"""The validation hook. The trainer does not know how a model is validated: it calls a function
injected by whoever builds it (workflows/assembly.py passes an importance-weighted bound on the
validation split, or with `validation_fraction` the held-out cells' imputation error), at the end of
every `valid_every`-th epoch and of the last one, or every `valid_every_steps` updates and after the
last. Higher is better: an error is reported negated.

A validator must not move the training RNG (exact resume): draw from a generator of its own.

Held-out cells (`hold_out_cells`): a fraction of the OBSERVED cells of the training rows is hidden
from training by a mask drawn from the run's seed alone (the same mask on a resume, in the CLI and in
scikit-learn), and the validator scores the model's imputation of them. Every row still trains on
its other cells."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn


class ValidationEstimate(Protocol):
    """What a validator returns (evaluation's LogLikelihoodEstimate has this shape)."""

    mean: float
    stderr: float
    estimator: str


Validator = Callable[[nn.Module], ValidationEstimate]


def validation_due(epochs_done: int, valid_every: int, epochs: int) -> bool:
    """Validate after every `valid_every`-th epoch and after the last (never when valid_every = 0)."""
    return bool(valid_every) and (epochs_done % valid_every == 0 or epochs_done == epochs)


#: what the held-out-cells validator reports (negated: higher is better, as for a bound)
HELD_OUT_ESTIMATOR = "minus held-out RMSE"
_HOLD_OUT_STREAM = 0x6865_6C64  # keeps the mask's generator apart from any other use of the seed


@dataclass(frozen=True)
class HeldOutError:
    """-RMSE of the imputation of the held-out cells (a ValidationEstimate); stderr by the delta method."""

    mean: float
    stderr: float
    estimator: str = HELD_OUT_ESTIMATOR


def hold_out_cells(mask: Tensor, fraction: float, seed: int, max_rows: int | None = None) -> tuple[Tensor, Tensor]:
    """(training mask, held-out cells): round(fraction x observed cells) of the cells True in `mask`
    (at least one), drawn uniformly from a generator of `seed` alone, moved from the first to the second.
    max_rows: draw them within that many rows only (a random subset of the rows, drawn first), so that a
    check imputes at most max_rows rows however long the table; `fraction` is then of those rows' cells."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(int(seed) ^ _HOLD_OUT_STREAM)
    eligible = mask
    if max_rows is not None and mask.shape[0] > max_rows:
        rows = torch.zeros(mask.shape[0], dtype=torch.bool)
        rows[torch.randperm(mask.shape[0], generator=generator)[:max_rows]] = True
        eligible = mask & rows.unsqueeze(1)
    cells = torch.nonzero(eligible.flatten()).squeeze(1)
    if cells.numel() < 2:
        raise ValueError("holding out cells needs at least two observed cells")
    count = min(cells.numel() - 1, max(1, round(fraction * cells.numel())))
    chosen = cells[torch.randperm(cells.numel(), generator=generator)[:count]]
    held_out = torch.zeros(mask.numel(), dtype=torch.bool)
    held_out[chosen] = True
    held_out = held_out.reshape(mask.shape)
    return mask & ~held_out, held_out


def held_out_error(imputed: Tensor, truth: Tensor, held_out: Tensor) -> HeldOutError:
    """The RMSE of `imputed` against `truth` over the held-out cells, negated."""
    squared = (imputed.to(torch.float64) - truth.to(torch.float64))[held_out] ** 2
    mse = float(squared.mean())
    rmse = math.sqrt(mse)
    se_mse = float(squared.std() / math.sqrt(squared.numel())) if squared.numel() > 1 else 0.0
    return HeldOutError(-rmse, se_mse / (2 * rmse) if rmse > 0 else 0.0)
