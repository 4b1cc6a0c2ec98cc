"""The parser of each `deepem` subcommand, made from its declaration (commands.py) and the settings'
(run, model, estimators): every flag by deepem.settings.add_setting; and the checks of typed values
that need none of the library (so `--help`, argument errors and a refused --nproc answer before torch
loads). cli.py assembles the parser from these."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from deepem.declarations.commands import QUIET, THREADS, Command, command_estimators
from deepem.declarations.estimators import ESTIMATOR_NAMES, ESTIMATOR_SETTINGS
from deepem.declarations.model import ModelSettings
from deepem.declarations.run import PARTICLES, RunSettings, parse_optim_setting
from deepem.errors import UserError
from deepem.settings import Setting, SettingError, add_arguments, add_setting, declared, key_value

#: the TrainConfig settings with a flag of their own (the others: --option, --optim, --architecture-option)
RUN_FLAGS = [name for name, s in declared(RunSettings).items() if s.flag]


def parse_method_option(text: str) -> tuple[str, Any]:
    key, value = key_value(text)
    if key in ("particles", "k"):
        raise SettingError(f"K is set with --particles (or -k), not --option {text}")
    return key, value


#: the run's flags that are not one field of RunSettings: the method's and the preset's options, and the
#: optimiser settings per parameter group (each a list of what the repeated flag gave)
OPTION = Setting("option", Any, None, "a method option other than K (repeatable); `deepem list` and `deepem train "
                 "--method M --help` show them", short="-o", dest="options", metavar="KEY=VALUE", repeat=True,
                 parse=parse_method_option)
ARCHITECTURE_OPTION = Setting("architecture_option", Any, None, "an option of the preset (repeatable), e.g. "
                              "layer_sizes=[100,50]", dest="architecture_options", metavar="KEY=VALUE", repeat=True,
                              parse=key_value)
OPTIM = Setting("optim", Any, None, "optimiser setting of one parameter group (repeatable): GROUP is theta, phi or a "
                "group the method owns; KEY is lr, betas (e.g. 0.9,0.99) or steps (optimiser steps per batch). E.g. "
                "--optim phi:lr=3e-4 --optim discriminator:steps=5. What you type wins over a method's paper "
                "settings; the run says which settings are in effect and where each came from",
                metavar="GROUP:KEY=VALUE", repeat=True, parse=parse_optim_setting)


def add_run_arguments(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """The run settings' flags, one per declared setting (None = not typed: the declared default applies
    to a new run, and a resumed run changes exactly the settings typed, even to a value equal to it)."""
    add_arguments(p.add_argument_group("data and model"), ModelSettings)
    g = p.add_argument_group("run and optimisation")
    add_arguments(g, RunSettings, names=[s for s in RUN_FLAGS if s not in exclude])
    for s in (PARTICLES, OPTION, ARCHITECTURE_OPTION, OPTIM):
        add_setting(g, s)
    add_setting(g, QUIET, untyped_none=False)


def add_command(sub: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """The parser of one subcommand, every flag from its declaration (declarations/commands.py)."""
    p = sub.add_parser(command.name, help=command.help)
    for s in command.flags:
        add_setting(p, registered_choices(s), untyped_none=False)
    if command.run:
        add_run_arguments(p, exclude=command.run_exclude)
    add_estimator_arguments(p, command_estimators(command))
    for s in command.after:
        add_setting(p, s, untyped_none=False)
    p.set_defaults(command_function=command.function)
    return p


def registered_choices(s: Setting) -> Setting:
    """A choice of estimator offers the estimators registered when the parser is built: a plug-in module
    (DEEPEM_PLUGINS) may have added one to the built-in ESTIMATOR_NAMES."""
    return dataclasses.replace(s, choices=tuple(ESTIMATOR_SETTINGS)) if s.choices == ESTIMATOR_NAMES else s


def check_nproc(args: argparse.Namespace, cores: int) -> None:
    """Refuse an --nproc job that cannot work before any process starts: more processes than cores (each
    would wait for the others at every step) or, in training, than points per batch."""
    nproc = args.nproc
    if nproc > cores and not args.oversubscribe:
        raise UserError(f"--nproc {nproc} starts {nproc} processes on {cores} cores: {nproc} > {cores}, so they "
                        f"would share cores and wait for each other at every step; use --nproc {cores} or fewer, "
                        "or add --oversubscribe")
    if args.command == "train":
        batch = args.batch_size if args.batch_size is not None else recorded_batch_size(args)
        if batch is not None and nproc > batch:
            raise UserError(f"--nproc {nproc} splits each batch of {batch} points over {nproc} processes: "
                            f"{batch} / {nproc} < 1 point per process; use --nproc {batch} or fewer, or a "
                            f"--batch-size of at least {nproc}")


def recorded_batch_size(args: argparse.Namespace) -> int | None:
    """The batch size a new run takes by default, or a resumed one from its config.json (None: unknown)."""
    if not args.resume:
        return declared(RunSettings)["batch_size"].default
    try:
        return int(json.loads((Path(args.resume) / "config.json").read_text())["batch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no readable run there: resuming it says why


def add_estimator_arguments(p: argparse.ArgumentParser, records: tuple[type, ...]) -> None:
    """One flag per setting of the estimators' records (a setting several share, once), a group per
    estimator: the same generator as the run settings' flags (deepem.settings.add_arguments)."""
    seen: set[str] = set()
    for record in records:
        names = [name for name in declared(record) if name not in seen]
        seen.update(names)
        add_arguments(p.add_argument_group(f"{getattr(record, 'estimator', record.__name__)} estimator"), record,
                      names=names)


def finish_parser(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """--threads after the subcommand too (SUPPRESS: left out, the value given before the subcommand, or
    None, is kept)."""
    for p in sub.choices.values():
        add_setting(p, THREADS, untyped_none=False, default=argparse.SUPPRESS)
