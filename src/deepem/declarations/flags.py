"""The flags of the `deepem` subcommands, made from the settings' declarations (run, model, estimators), and
the checks of typed values that need none of the library (so `--help`, argument errors and a refused --nproc
answer before torch loads). cli.py assembles the parser from these."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from deepem.declarations.model import ModelSettings
from deepem.declarations.run import PARTICLES, RunSettings, parse_optim_setting
from deepem.errors import UserError
from deepem.settings import (
    SettingError,
    add_arguments,
    add_setting,
    argparse_type,
    declared,
    key_value,
    positive_int,
)

#: the TrainConfig settings with a flag of their own (the others: --option, --optim, --architecture-option)
RUN_FLAGS = [name for name, s in declared(RunSettings).items() if s.flag]
DATA_DIR_HELP = "folder with dataset files (default: $DEEPEM_DATA or ~/.cache/deepem)"


def parse_method_option(text: str) -> tuple[str, Any]:
    key, value = key_value(text)
    if key in ("particles", "k"):
        raise SettingError(f"K is set with --particles (or -k), not --option {text}")
    return key, value


def add_run_arguments(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """The run settings' flags, one per declared setting (None = not typed: the declared default applies
    to a new run, and a resumed run changes exactly the settings typed, even to a value equal to it)."""
    add_arguments(p.add_argument_group("data and model"), ModelSettings)
    g = p.add_argument_group("run and optimisation")
    add_arguments(g, RunSettings, names=[s for s in RUN_FLAGS if s not in exclude])
    add_setting(g, PARTICLES)
    g.add_argument("--option", "-o", dest="options", action="append", type=argparse_type(parse_method_option),
                   metavar="KEY=VALUE", help="a method option other than K (repeatable); `deepem list` shows them")
    g.add_argument("--architecture-option", dest="architecture_options", action="append", type=argparse_type(key_value),
                   metavar="KEY=VALUE", help="an option of the preset (repeatable), e.g. layer_sizes=[100,50]")
    g.add_argument("--optim", action="append", type=argparse_type(parse_optim_setting), metavar="GROUP:KEY=VALUE",
                   help="optimiser setting of one parameter group (repeatable): GROUP is theta, phi or a group "
                        "the method owns; KEY is lr, betas (e.g. 0.9,0.99) or steps (optimiser steps per batch). "
                        "E.g. --optim phi:lr=3e-4 --optim discriminator:steps=5. What you type wins over a "
                        "method's paper settings; the run says which settings are in effect and where each came "
                        "from")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def add_nproc(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--nproc", type=positive_int, default=1,
                   help=f"{what} in N processes on this machine (torch.distributed; gloo on CPU, NCCL on GPU). "
                        "Each gets max(1, cores // N) torch threads unless --threads is given. At most one per "
                        "core unless --oversubscribe. Under torchrun, leave it out (or give torchrun's "
                        "--nproc-per-node)")
    p.add_argument("--oversubscribe", action="store_true",
                   help="allow --nproc above the number of cores (each process then shares a core)")


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
    """What every subcommand shares: --threads after the subcommand too, and each option's default in --help."""
    threads = next(a for a in parser._actions if a.dest == "threads")
    for p in sub.choices.values():
        # SUPPRESS: without --threads here, the value given before the subcommand (or None) is kept.
        p.add_argument("--threads", type=positive_int, default=argparse.SUPPRESS, help=threads.help)
    for p in (parser, *sub.choices.values()):
        for action in p._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or action.default == argparse.SUPPRESS:
                continue
            if "default" not in (action.help or "").lower():
                shown = ("off" if action.default is False else "none" if action.default in (None, [])
                         else ",".join(map(str, action.default)) if isinstance(action.default, list)
                         else action.default)
                shown = str(shown).replace("%", "%%")  # help strings are %-format templates
                action.help = f"{action.help or ''} (default: {shown})".strip()
