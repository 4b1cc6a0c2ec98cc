"""The settings record of every estimator. They are declared without torch in
deepem/declarations/estimators.py (the CLI builds its flags from them before torch is imported); this
module is where the evaluation layer takes them from."""

from deepem.declarations.estimators import (
    ESTIMATOR_SETTINGS,
    INITIALS,
    PROPOSALS,
    AISSettings,
    EstimatorSettingError,
    IWSettings,
    ObservedIWSettings,
    defaults,
    fail,
    validate,
)

__all__ = ["ESTIMATOR_SETTINGS", "INITIALS", "PROPOSALS", "AISSettings", "EstimatorSettingError", "IWSettings",
           "ObservedIWSettings", "defaults", "fail", "validate"]
