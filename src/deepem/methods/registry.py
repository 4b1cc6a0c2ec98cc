"""Methods by name: the CLI's `--method` and `compare --methods` look them up here.
A new method is one file plus one entry in the tuple below (the registry itself, `METHODS`, is declared in
base.py so that a refused model can be told which methods fit it)."""

from __future__ import annotations

import inspect
from typing import Any

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

__all__ = ["METHODS", "get_method_class", "make_method", "method_options", "resolve_aliases"]


def method_options(name: str) -> dict[str, Any]:
    """The keyword options of a method and their defaults."""
    cls = get_method_class(name)
    params = inspect.signature(cls.__init__).parameters
    return {p.name: p.default for p in params.values() if p.name != "self"}


def get_method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def resolve_aliases(cls: type[Method], options: dict[str, Any]) -> dict[str, Any]:
    """`options` with former option names (`cls.option_aliases`) replaced by their names now; an option
    given under both names is an error."""
    resolved = dict(options)
    for old, new in cls.option_aliases.items():
        if old in resolved:
            if new in resolved:
                raise ValueError(f"method {cls.name!r}: give {new!r} once ({old!r} is its former name)")
            resolved[new] = resolved.pop(old)
    return resolved


def make_method(name: str, **options: Any) -> Method:
    """Build a method by name; an option it does not take is an error that lists the ones it does.
    Options under a former name (`Method.option_aliases`, e.g. from an older run's config.json) work."""
    cls = get_method_class(name)
    options = resolve_aliases(cls, options)
    allowed = method_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"method {name!r} has no option {', '.join(unknown)}; its options are: "
            + ", ".join(f"{k} (default {v!r})" for k, v in allowed.items())
        )
    return cls(**options)
