"""Plug-ins: modules of the user's own, named in the environment variable DEEPEM_PLUGINS
(comma-separated, e.g. `DEEPEM_PLUGINS=my_methods,lab.estimators`), imported when the `deepem` command
starts, before its arguments are parsed. A plug-in registers its methods (`deepem.methods.register_method`)
and estimators (`deepem.evaluation.register_estimator`) as it is imported, so that every subcommand
(`train --method`, `evaluate --estimator` with its settings' flags, `compare`) offers them, in every
process of an `--nproc` job too (each rank starts the command again, with the same environment).

An environment variable and not an entry point: a module on PYTHONPATH is enough, with no package to
install, and the command line that uses it says so in the open. Without the variable nothing is
imported, so `deepem --help` still answers before torch loads."""

from __future__ import annotations

import importlib
import os

from deepem.errors import UserError

#: the environment variable naming the plug-in modules
PLUGINS_VARIABLE = "DEEPEM_PLUGINS"


class PluginError(UserError):
    """A plug-in module named in DEEPEM_PLUGINS could not be found."""


def plugin_names(environ: dict[str, str] | None = None) -> list[str]:
    """The module names DEEPEM_PLUGINS lists, in order (empty entries left out)."""
    text = (os.environ if environ is None else environ).get(PLUGINS_VARIABLE, "")
    return [name.strip() for name in text.split(",") if name.strip()]


def load_plugins(environ: dict[str, str] | None = None) -> list[str]:
    """Import every module DEEPEM_PLUGINS names (a module already imported is not imported again); the
    names imported. A module that is not found is one line naming it and the search path; an error
    inside a plug-in keeps its traceback (it is a bug in the plug-in)."""
    names = plugin_names(environ)
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise  # the plug-in itself imports something missing: its own traceback says what
            raise PluginError(f"{PLUGINS_VARIABLE} names {name!r}, which is not an importable module; put its "
                              "folder on PYTHONPATH (or install it)") from err
    return names
