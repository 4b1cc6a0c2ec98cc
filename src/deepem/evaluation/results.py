"""A log-likelihood estimate that says how it was made and keeps its per-data-point values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class LogLikelihoodEstimate:
    """Per-point estimates of log p(x) (nats) with the estimator's name and settings.

    `estimator` is a short label such as "IWAE bound, K=5000" or "AIS, T=1000, chains=16"."""

    per_point: Tensor  # (N,), float64 on CPU
    estimator: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(self.per_point.mean())

    @property
    def stderr(self) -> float:
        n = self.per_point.numel()
        return float(self.per_point.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "log_likelihood": self.mean,
            "stderr": self.stderr,
            "estimator": self.estimator,
            "n_points": int(self.per_point.numel()),
            **self.settings,
        }

    @staticmethod
    def concat(parts: list[Tensor]) -> Tensor:
        return torch.cat([p.detach().to("cpu", torch.float64) for p in parts])
