"""The settings record of every estimator of log p(x), declared once without torch: each field's
default, help and allowed values (deepem.settings.setting). Validation, the CLI's flags (the same
`add_arguments` as the run settings) and the evaluation record are read from these declarations; a
bad value raises one line naming the estimator and the setting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from deepem.errors import UserError
from deepem.settings import SettingError, convert, declared, setting

#: the registered estimators (evaluation/estimators.py ESTIMATORS), in their order
ESTIMATOR_NAMES = ("iw", "iw-observed", "ais")
#: where AIS chains start: the prior p(z) (Wu et al. 2016) or the encoder q(z|x)
INITIALS = ("prior", "encoder")
#: encoder inputs of a missing-data proposal: x with missing entries zero-filled, or completed once
PROPOSALS = ("zero-filled", "completed")
#: inference/temperatures.py TEMPERATURE_SCHEDULES; inference/adaptation.py TARGET_ACCEPTANCE
TEMPERATURE_SCHEDULE_NAMES = ("linear", "sigmoid")
TARGET_ACCEPTANCE = 0.6


class EstimatorSettingError(UserError, ValueError):
    """An estimator setting out of its allowed range (the message names the setting)."""


def validate(record: Any) -> None:
    """Check every field of a settings record against its declaration (type, range, choices) with the one
    validator of every setting (deepem.settings.convert); the message names the estimator."""
    for name, s in declared(type(record)).items():
        try:
            convert(s, getattr(record, name))
        except SettingError as err:
            raise EstimatorSettingError(str(err).replace("invalid ", f"invalid {record.estimator} setting ", 1)
                                        if str(err).startswith("invalid ") else
                                        f"{record.estimator} setting {err}") from None


def fail(record: Any, name: str, value: Any, must: str) -> None:
    raise EstimatorSettingError(f"invalid {record.estimator} setting {name} = {value!r}: must be {must}")


@dataclass(frozen=True)
class IWSettings:
    """The importance-weighted estimate with K particles from q(z|x) (Burda et al. 2015)."""

    estimator = "iw"
    particles: int = setting(5000, "K, particles per data point of the IW estimate", minimum=1, short="-k")
    chunk_particles: int | None = setting(None, "particles per decoder call", minimum=1,
                                          shown="about 4 MB of activations per chunk")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class ObservedIWSettings(IWSettings):
    """The IW estimate of log p(x_o) on incomplete data, with the proposal of a missing-data method:
    q(z | x̃0), missing entries zero-filled (MIWAE), or q(z | x̆), x completed once (miss-IWEM)."""

    estimator = "iw-observed"
    proposal: str = setting("zero-filled", "encoder input of the proposal: the zero-filled data or the "
                            "data completed once from the model", choices=PROPOSALS)


@dataclass(frozen=True)
class AISSettings:
    """Annealed importance sampling with HMC (Wu et al. 2016). The defaults are a CPU budget; the
    paper's setting is temperatures=10000."""

    estimator = "ais"
    chains: int = setting(16, "AIS chains per data point", minimum=1)
    temperatures: int = setting(500, "number of AIS temperatures T (β=0 and β=1 included)", minimum=2)
    leapfrog_steps: int = setting(10, "leapfrog steps L per HMC transition", minimum=1)
    step_size: float = setting(0.05, "initial HMC step size (adapted per data point)", above=0)
    schedule: str = setting("sigmoid", "AIS temperature schedule", choices=TEMPERATURE_SCHEDULE_NAMES)
    initial: str = setting("prior", "start the chains at the prior p(z) (Wu et al. 2016) or at the encoder "
                           "q(z|x) (needs an explicit encoder)", choices=INITIALS, flag_name="--ais-initial")
    target_acceptance: float = setting(TARGET_ACCEPTANCE, "HMC acceptance rate the step size is tuned to",
                                       above=0, below=1)
    # 5% per transition lets a 100-temperature run still adapt.
    adaptation_rate: float = setting(0.05, "multiplicative step-size change per transition", above=0)

    def __post_init__(self) -> None:
        validate(self)


#: the records of the registered estimators, by name
ESTIMATOR_SETTINGS: dict[str, type] = {r.estimator: r for r in (IWSettings, ObservedIWSettings, AISSettings)}


def defaults(record: type) -> dict[str, Any]:
    """The declared default of every field of a settings record."""
    return {f.name: f.default for f in dataclasses.fields(record)}
