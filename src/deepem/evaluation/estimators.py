"""The estimators of log p(x), registered by name as methods are: each a class with one settings
record (evaluation/settings.py), run over a dataset by the batched driver (evaluation/driver.py).
Reverse AIS (the upper half of BDMC) is a driver of its own: evaluation/bdmc.py."""

from __future__ import annotations

from typing import Any

from deepem.evaluation.ais import AISEstimator
from deepem.evaluation.driver import Estimator
from deepem.evaluation.loglik import IWEstimator
from deepem.evaluation.observed_loglik import ObservedIWEstimator
from deepem.evaluation.settings import EstimatorSettingError

#: estimator name -> class
ESTIMATORS: dict[str, type[Estimator]] = {e.name: e for e in (IWEstimator, ObservedIWEstimator, AISEstimator)}


def make_estimator(name: str, **settings: Any) -> Estimator:
    """The estimator `name` with `settings` (its settings record's fields; None leaves a default)."""
    if name not in ESTIMATORS:
        raise EstimatorSettingError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](**{k: v for k, v in settings.items() if v is not None})
