"""The one check of the registry facts the torch-free parser holds (deepem/declarations): each name list,
bound and default copied there agrees with the registry or constant the library uses, and the built-in
methods' option declarations agree with their constructors (names, types, defaults, and what each
constructor refuses). A copy that disagrees is named (the second test plants one of each kind)."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import pytest

from deepem.data import corruption
from deepem.declarations import commands, estimators, methods, model, run
from deepem.evaluation import imputation_baselines
from deepem.evaluation.estimators import ESTIMATORS
from deepem.inference import adaptation, moments, temperatures
from deepem.methods import iwem, rem, rws
from deepem.methods.registry import METHODS, method_settings
from deepem.models import completion, config, likelihoods, networks
from deepem.settings import Setting, signature_settings
from deepem.training import config as train_config
from deepem.training import schedules
from deepem.workflows import impute

#: (module holding the copy, its name there, what the library holds)
FACTS: list[tuple[ModuleType, str, Callable[[], Any]]] = [
    (model, "ACTIVATION_NAMES", lambda: tuple(sorted(networks.ACTIVATIONS))),
    (model, "LIKELIHOOD_NAMES", lambda: tuple(sorted(likelihoods.LIKELIHOODS))),
    (model, "ARCHITECTURE_NAMES", lambda: tuple(sorted(config.ARCHITECTURES))),
    (model, "LATENT_NAMES", lambda: tuple(config.LATENTS)),
    (model, "ENCODER_KINDS", lambda: config.ENCODER_KINDS),
    (run, "DTYPE_NAMES", lambda: tuple(train_config.DTYPES)),
    (run, "LR_SCHEDULES", lambda: schedules.LR_SCHEDULES),
    (estimators, "ESTIMATOR_NAMES", lambda: tuple(ESTIMATORS)),
    (estimators, "ESTIMATOR_SETTINGS", lambda: {name: e.Settings for name, e in ESTIMATORS.items()}),
    (estimators, "TEMPERATURE_SCHEDULE_NAMES", lambda: tuple(sorted(temperatures.TEMPERATURE_SCHEDULES))),
    (estimators, "TARGET_ACCEPTANCE", lambda: adaptation.TARGET_ACCEPTANCE),
    (commands, "SPLITS", lambda: corruption.SPLITS),
    (commands, "BASELINE_NAMES", lambda: tuple(impute.BASELINE_CHOICES)),
    (commands, "ITERATIVE_MAX_CELLS", lambda: imputation_baselines.ITERATIVE_MAX_CELLS),
    (commands, "ITERATIVE_MAX_COLUMNS", lambda: imputation_baselines.ITERATIVE_MAX_COLUMNS),
    (commands, "ITERATIVE_NEAREST", lambda: imputation_baselines.ITERATIVE_NEAREST),
    (methods, "METHOD_NAMES", lambda: tuple(n for n, c in METHODS.items() if c.__module__.startswith("deepem."))),
    (methods, "PHI_UPDATES", lambda: rws.PHI_UPDATES),
    (methods, "COVARIANCES", lambda: moments.COVARIANCES),
    (methods, "PHI_PROPOSALS", lambda: rem.PHI_PROPOSALS),
    (methods, "ALPHA_UNITS", lambda: iwem.ALPHA_UNITS),
    (methods, "COMPLETIONS", lambda: completion.COMPLETIONS),
]


def _kind(hint: Any) -> Any:
    """A type hint with Sequence[X] read as list[X] (a declaration says list where a constructor takes any)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return frozenset(_kind(a) for a in args)
    if origin in (list, Sequence):
        return ("list", *map(_kind, args))
    return hint


#: where the declaration refuses more than the constructor does, on purpose: the constructor checks it later
#: (the discriminator's activation when it is built) or only where it matters (contrast_draws with
#: adaptive_contrast), or not at all (a negative adaptation rate); the registry refuses it up front
STRICTER = {("avb", "discriminator_activation"), ("iwavb", "discriminator_activation"), ("avb", "contrast_draws"),
            ("iwavb", "contrast_draws"), ("aiwae", "adaptation_rate")}


def _refused(cls: type, name: str, value: Any) -> bool:
    try:
        cls(**{name: value})
    except ValueError:
        return True
    return False


def option_disagreements(name: str) -> list[str]:
    """How method `name`'s declared options differ from its constructor."""
    cls, declaration = METHODS[name], methods.METHOD_OPTIONS.get(name)
    if declaration is None:
        return [f"{name}: no option declaration"]
    ours, theirs = declaration, signature_settings(cls.__init__)
    out = []
    if list(ours) != list(theirs):
        return [f"{name}: options {list(ours)} declared, the constructor takes {list(theirs)}"]
    for option, s in ours.items():
        if s.default != theirs[option].default or _kind(s.kind) != _kind(theirs[option].kind):
            out.append(f"{name}.{option}: declared {s.kind} = {s.default!r}, the constructor has "
                       f"{theirs[option].kind} = {theirs[option].default!r}")
        out += [f"{name}.{option}: {why}" for why in _range_disagreements(cls, option, s, (name, option) in STRICTER)]
    return out


def _range_disagreements(cls: type, option: str, s: Setting, stricter: bool = False) -> list[str]:
    """Each end of the declared range and each choice is taken by the constructor, and (unless the
    declaration is `stricter` on purpose) just past an end, or a value not among the choices, is refused."""
    kind = s.kind
    if type(None) in typing.get_args(kind):  # X | None: X's values
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    listed = typing.get_origin(kind) is list
    step = 1 if (typing.get_args(kind) or (kind,))[0] is int else 1e-9

    def wrap(v: Any) -> Any:
        return [v] if listed else v

    takes: list[Any] = []
    refuses: list[Any] = []
    if s.minimum is not None:
        takes.append(s.minimum)
        refuses.append(s.minimum - step)
    if s.maximum is not None:
        takes.append(s.maximum)
        refuses.append(s.maximum + step)
    if s.above is not None:
        takes.append(s.above + step)
        refuses.append(s.above)
    if s.below is not None:
        takes.append(s.below - step)
        refuses.append(s.below)
    if s.choices is not None:
        takes += list(s.choices)
        refuses.append("no-such-choice")
    takes = [wrap(int(v) if step == 1 else v) for v in takes]
    refuses = [wrap(int(v) if step == 1 and not isinstance(v, str) else v) for v in refuses]
    return ([f"the constructor refuses {v!r}, which the declaration allows" for v in takes if _refused(cls, option, v)]
            + [f"the constructor takes {v!r}, which the declaration refuses" for v in refuses
               if not stricter and not _refused(cls, option, v)])


def disagreements() -> list[str]:
    """Every copy in the declarations that the library does not hold."""
    out = [f"{module.__name__}.{name}" for module, name, truth in FACTS if getattr(module, name) != truth()]
    for name in methods.METHOD_OPTIONS:
        out += option_disagreements(name)
    return out


def test_every_registry_fact_of_the_parser_is_the_library_s():
    assert disagreements() == []
    assert set(methods.METHOD_OPTIONS) == set(methods.METHOD_NAMES)
    # and what the parser shows is what the registry uses
    for name in methods.METHOD_NAMES:
        assert method_settings(name) == methods.METHOD_OPTIONS[name]


def test_a_copy_that_disagrees_is_named(monkeypatch):
    for module, name, _ in FACTS:
        with monkeypatch.context() as patch:
            value = getattr(module, name)
            patch.setattr(module, name, value + 1 if isinstance(value, (int, float)) else
                          {**value, "extra": None} if isinstance(value, dict) else (*value, "extra"))
            assert disagreements() == [f"{module.__name__}.{name}"]
    # a method option's default, its range and its choices
    planted = [("rem-v1", "jitter", {"default": 1e-5}, "rem-v1.jitter: declared"),
               ("rem-v1", "particles", {"minimum": 1}, "rem-v1.particles: the constructor refuses 1"),
               ("nvil", "decay", {"below": 2}, "nvil.decay: the constructor refuses"),
               ("rws", "phi_update", {"choices": ("wake", "dream")}, "rws.phi_update: the constructor")]
    for name, option, change, message in planted:
        with monkeypatch.context() as patch:
            patch.setitem(methods.METHOD_OPTIONS[name], option,
                          dataclasses.replace(methods.METHOD_OPTIONS[name][option], **change))
            found = [d for d in disagreements() if d.startswith(message.split(":")[0] + ":")]
            assert found and found[0].startswith(message), (found, message)


@pytest.mark.parametrize("name", methods.METHOD_NAMES)
def test_each_declared_option_has_help(name):
    for option, s in methods.METHOD_OPTIONS[name].items():
        assert s.help and s.name == option, f"{name}.{option}"
    assert inspect.signature(METHODS[name].__init__)  # (a constructor to check against)


def test_a_method_registered_from_outside_declares_its_options_or_has_them_read(monkeypatch):
    from deepem.methods.base import Method
    from deepem.methods.registry import make_method
    from deepem.methods.rem import REM
    from deepem.settings import SettingError, setting

    @dataclasses.dataclass
    class Options:
        particles: int = setting(3, "K", minimum=1)
        width: int = setting(10, "a width of its own", minimum=1)

    class Declared(Method):
        name = "declared-outside"

        def __init__(self, particles: int = 3, width: int = 10) -> None:
            super().__init__(particles)
            self.width = width

    Declared.Options = Options

    class Introspected(REM):  # a subclass: REM's declaration does not describe its constructor
        name = "introspected-outside"

        def __init__(self, particles: int = 4, spread: float = 0.5) -> None:
            super().__init__(particles)
            self.spread = spread

    monkeypatch.setitem(METHODS, Declared.name, Declared)
    monkeypatch.setitem(METHODS, Introspected.name, Introspected)
    assert method_settings("declared-outside")["width"].help == "a width of its own"
    with pytest.raises(SettingError, match="invalid width = 0: must be an integer >= 1"):
        make_method("declared-outside", width=0)
    assert {k: s.default for k, s in method_settings("introspected-outside").items()} == {"particles": 4,
                                                                                          "spread": 0.5}
    assert make_method("introspected-outside", spread=2.0).spread == 2.0
