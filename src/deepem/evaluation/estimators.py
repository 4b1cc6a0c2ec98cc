"""The estimators of log p(x), registered by name as methods are: each a class with one settings
record (evaluation/settings.py), run over a dataset by the batched driver (evaluation/driver.py).
Reverse AIS (the upper half of BDMC) is a driver of its own: evaluation/bdmc.py. An estimator of one's
own is registered with `register_estimator` (from a plug-in module for the CLI: docs/evaluating.md)."""

from __future__ import annotations

from typing import Any

from deepem.evaluation.ais import AISEstimator
from deepem.evaluation.driver import Estimator
from deepem.evaluation.loglik import IWEstimator
from deepem.evaluation.observed_loglik import ObservedIWEstimator
from deepem.evaluation.settings import ESTIMATOR_SETTINGS, EstimatorSettingError

#: estimator name -> class
ESTIMATORS: dict[str, type[Estimator]] = {e.name: e for e in (IWEstimator, ObservedIWEstimator, AISEstimator)}


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Offer an estimator class (an `Estimator` with `name` and a `Settings` dataclass) by its name, to
    `make_estimator` and to `deepem evaluate --estimator NAME`, whose flags its settings then have (a
    setting another estimator declares, such as `particles`, shares that flag). Usable as a decorator."""
    if not (isinstance(cls, type) and issubclass(cls, Estimator)):
        raise TypeError(f"{cls!r} is not an Estimator subclass")
    taken = ESTIMATORS.get(cls.name)
    if taken is not None and taken is not cls:
        raise EstimatorSettingError(f"estimator name {cls.name!r} is taken by {taken.__module__}.{taken.__name__}")
    ESTIMATORS[cls.name] = cls
    ESTIMATOR_SETTINGS[cls.name] = cls.Settings  # the CLI's --estimator choices and flags
    return cls


def make_estimator(name: str, **settings: Any) -> Estimator:
    """The estimator `name` with `settings` (its settings record's fields; None leaves a default)."""
    if name not in ESTIMATORS:
        raise EstimatorSettingError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](**{k: v for k, v in settings.items() if v is not None})
