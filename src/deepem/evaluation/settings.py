"""The settings record of every estimator, declared once: each field's default, help, and its allowed
values ("min" or "choices" in the field's metadata). Validation, the CLI's flags and the evaluation
record are all read from these declarations; a bad value raises one line naming the setting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from deepem.errors import UserError
from deepem.inference.adaptation import TARGET_ACCEPTANCE
from deepem.inference.temperatures import TEMPERATURE_SCHEDULES

#: where AIS chains start: the prior p(z) (Wu et al. 2016) or the encoder q(z|x)
INITIALS = ("prior", "encoder")
#: encoder inputs of a missing-data proposal: x with missing entries zero-filled, or completed once
PROPOSALS = ("zero-filled", "completed")


class EstimatorSettingError(UserError, ValueError):
    """An estimator setting out of its allowed range (the message names the setting)."""


def setting(default: Any, help: str, **rules: Any) -> Any:
    """A settings field: its default, its help text and its rules ("min": the least value; "greater":
    a strict lower bound; "below": a strict upper bound; "choices": the allowed values)."""
    return field(default=default, metadata={"help": help, **rules})


def validate(record: Any) -> None:
    """Check every field of a settings record against the rules its declaration states."""
    for f in dataclasses.fields(record):
        value, rules = getattr(record, f.name), f.metadata
        if value is None and f.default is None:
            continue
        if "choices" in rules and value not in rules["choices"]:
            fail(record, f.name, value, f"one of {', '.join(map(str, rules['choices']))}")
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ("min" in rules or "greater" in rules or "below" in rules) and not numeric:
            fail(record, f.name, value, "a number")
        if "min" in rules and value < rules["min"]:
            fail(record, f.name, value, f">= {rules['min']}")
        if "greater" in rules and not value > rules["greater"]:
            fail(record, f.name, value, f"> {rules['greater']}")
        if "below" in rules and not value < rules["below"]:
            fail(record, f.name, value, f"< {rules['below']}")


def fail(record: Any, name: str, value: Any, must: str) -> None:
    raise EstimatorSettingError(f"invalid {record.estimator} setting {name} = {value!r}: must be {must}")


@dataclass(frozen=True)
class IWSettings:
    """The importance-weighted estimate with K particles from q(z|x) (Burda et al. 2015)."""

    estimator = "iw"
    particles: int = setting(5000, "K, particles per data point of the IW estimate", min=1)
    chunk_particles: int | None = setting(
        None, "particles per decoder call (default: about 4 MB of activations per chunk)", min=1)

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
    chains: int = setting(16, "AIS chains per data point", min=1)
    temperatures: int = setting(500, "number of AIS temperatures T (β=0 and β=1 included)", min=2)
    leapfrog_steps: int = setting(10, "leapfrog steps L per HMC transition", min=1)
    step_size: float = setting(0.05, "initial HMC step size (adapted per data point)", greater=0)
    schedule: str = setting("sigmoid", "AIS temperature schedule", choices=tuple(sorted(TEMPERATURE_SCHEDULES)))
    initial: str = setting("prior", "start the chains at the prior p(z) (Wu et al. 2016) or at the encoder "
                           "q(z|x)", choices=INITIALS)
    target_acceptance: float = setting(TARGET_ACCEPTANCE, "HMC acceptance rate the step size is tuned to",
                                       greater=0, below=1)
    # 5% per transition lets a 100-temperature run still adapt.
    adaptation_rate: float = setting(0.05, "multiplicative step-size change per transition", greater=0)

    def __post_init__(self) -> None:
        validate(self)


def defaults(record: type) -> dict[str, Any]:
    """The declared default of every field of a settings record."""
    return {f.name: f.default for f in dataclasses.fields(record)}
