"""Methods by name: the CLI's `--method` and `compare --methods` look them up here.
A new method is one file plus one line below."""

from __future__ import annotations

from typing import Any

from deepem.methods.aiwae import AIWAE
from deepem.methods.avb import AVB, IWAVB
from deepem.methods.base import Method
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
from deepem.settings import Setting, SettingError, check_values, signature_settings

METHODS: dict[str, type[Method]] = {
    VAE.name: VAE,
    IWAE.name: IWAE,
    RWS.name: RWS,
    REM.name: REM,
    REMv2.name: REMv2,
    IWEM.name: IWEM,
    IWEMWoo.name: IWEMWoo,
    IWEMWoa.name: IWEMWoa,
    IWAEDReG.name: IWAEDReG,
    IWAESTL.name: IWAESTL,
    AIWAE.name: AIWAE,
    WakeSleep.name: WakeSleep,
    VIMCO.name: VIMCO,
    NVIL.name: NVIL,
    AVB.name: AVB,
    IWAVB.name: IWAVB,
    MIWAE.name: MIWAE,
    MissIWEM.name: MissIWEM,
    MissIWEMWoa.name: MissIWEMWoa,
}


def method_options(name: str) -> dict[str, Any]:
    """The keyword options of a method and their defaults."""
    return {k: s.default for k, s in method_settings(name).items()}


def method_settings(name: str) -> dict[str, Setting]:
    """A method's options as declared by its constructor: name, type hint and default."""
    return signature_settings(get_method_class(name).__init__)


def get_method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise SettingError(f"unknown method {name!r}; available methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def make_method(name: str, **options: Any) -> Method:
    """Build a method by name; an option it does not take, or a value not of the option's type, is an
    error naming the option (SettingError)."""
    checked = check_values(method_settings(name), options, f"method {name!r}")
    return get_method_class(name)(**checked)
