"""Methods by name: the CLI's `--method` and `compare --methods` look them up here.
A new method is one file plus one entry in the tuple below, and its options declared in
declarations/methods.py (the registry itself, `METHODS`, is declared in base.py so that a refused model can
be told which methods fit it). A method's options: its own dataclass `Options` where it has one (a
method registered from outside the package may declare them so: a dataclass of `setting(...)` fields, or
a dict of `Setting`s), a built-in method's declaration in
declarations/methods.py, else its constructor's signature (names, types, defaults)."""

from __future__ import annotations

from typing import Any

from deepem.declarations.methods import METHOD_OPTIONS
from deepem.methods.aiwae import AIWAE
from deepem.methods.avb import AVB, IWAVB
from deepem.methods.base import METHODS, Method
from deepem.methods.iwae import IWAE
from deepem.methods.iwae_dreg import IWAESTL, IWAEDReG
from deepem.methods.iwem import IWEM, IWEMWoa, IWEMWoo
from deepem.methods.miss_iwem import MissIWEM, MissIWEMWoa
from deepem.methods.miwae import MIWAE
from deepem.methods.nvil import NVIL
from deepem.methods.rem import REM, REMv2
from deepem.methods.rws import RWS, WakeSleep
from deepem.methods.vae import VAE
from deepem.methods.vimco import VIMCO
from deepem.settings import Setting, SettingError, check_values, declared, signature_settings

METHODS.update({cls.name: cls for cls in (
    VAE,
    IWAE,
    RWS,
    REM,
    REMv2,
    IWEM,
    IWEMWoo,
    IWEMWoa,
    IWAEDReG,
    IWAESTL,
    AIWAE,
    WakeSleep,
    VIMCO,
    NVIL,
    AVB,
    IWAVB,
    MIWAE,
    MissIWEM,
    MissIWEMWoa,
)})

__all__ = ["METHODS", "get_method_class", "make_method", "method_options", "method_settings", "register_method",
           "resolve_aliases"]


def register_method(cls: type[Method]) -> type[Method]:
    """Offer a method class of one's own by its `name`, as the built-ins above are (from a plug-in module
    for the CLI: deepem/plugins.py). Usable as a decorator; a name another class holds is refused."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"{cls!r} is not a Method subclass")
    taken = METHODS.get(cls.name)
    if taken is not None and taken is not cls:
        raise SettingError(f"method name {cls.name!r} is taken by {taken.__module__}.{taken.__name__}")
    METHODS[cls.name] = cls
    return cls


def method_options(name: str) -> dict[str, Any]:
    """The keyword options of a method and their defaults."""
    return {k: s.default for k, s in method_settings(name).items()}


def method_settings(name: str) -> dict[str, Setting]:
    """A method's options: name, type, default, help, range and choices (see the module docstring)."""
    cls = get_method_class(name)
    own = cls.__dict__.get("Options")  # not inherited: a subclass with other options is not described by it
    if isinstance(own, dict):  # {name: Setting}, as declarations/methods.py declares the built-in ones
        return dict(own)
    if own is not None:  # a dataclass of setting(...) fields
        return declared(own)
    if METHOD_OPTIONS.get(name) is not None and cls.__module__.startswith("deepem.methods."):
        return dict(METHOD_OPTIONS[name])
    return signature_settings(cls.__init__)


def get_method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise SettingError(f"unknown method {name!r}; available methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def resolve_aliases(cls: type[Method], options: dict[str, Any]) -> dict[str, Any]:
    """`options` with former option names (`cls.option_aliases`) replaced by their names now; an option
    given under both names is an error."""
    resolved = dict(options)
    for old, new in cls.option_aliases.items():
        if old in resolved:
            if new in resolved:
                raise SettingError(f"method {cls.name!r}: give {new!r} once ({old!r} is its former name)")
            resolved[new] = resolved.pop(old)
    return resolved


def make_method(name: str, **options: Any) -> Method:
    """Build a method by name; an option it does not take, or a value not of the option's type, is an
    error naming the option (SettingError)."""
    cls = get_method_class(name)
    checked = check_values(method_settings(name), resolve_aliases(cls, options), f"method {name!r}")
    return cls(**checked)
