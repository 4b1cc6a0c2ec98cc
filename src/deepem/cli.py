"""The `deepem` command: train (one method, a run folder), evaluate (log-likelihood of a run), compare (several
methods, one table), impute (missing entries of a file, or of a run's own incomplete data), score (per-row
log-likelihood of a file), sample (image grid), bdmc (how
far to trust AIS), list (methods, architectures and datasets).

This module parses arguments and hands them to deepem/dispatch.py, which runs the subcommand (its body is in
workflows/commands.py). The parser is built from the settings' declarations (deepem/declarations), which
import without torch: `--help` and argument errors answer before torch, scikit-learn or matplotlib load."""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import signal
import sys
import textwrap

from deepem.declarations.commands import COMMANDS, THREADS
from deepem.declarations.flags import add_command, check_nproc, finish_parser
from deepem.declarations.methods import METHOD_NAMES, METHOD_OPTIONS, describe_options
from deepem.errors import UserError, quiet_on_broken_pipe
from deepem.plugins import load_plugins
from deepem.settings import OneLineParser, add_setting

#: the one module imported after parsing, by name (importlib): it runs a subcommand, with torch and the
#: rest of the library (tests/test_layering.py allows exactly this deferred import, and says why)
DISPATCH = "deepem.dispatch"
EXIT_INTERRUPTED = 130  # the shell's code for a SIGINT


def build_parser(method: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, each flag made from its declaration (deepem/declarations/commands.py).
    method: `train --help` also lists this method's options (`deepem train --method M --help`)."""
    parser = OneLineParser(prog="deepem", description=__doc__)
    add_setting(parser, THREADS, untyped_none=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = add_command(sub, command)
        if command.name == "train":
            p.formatter_class = argparse.RawDescriptionHelpFormatter  # (train has no description to wrap)
            p.epilog = method_epilog(method)
    finish_parser(parser, sub)
    return parser


def method_epilog(method: str | None) -> str:
    """What `deepem train --help` says after the flags: the options of --method M, where M is given."""
    if method is None:
        return ("deepem train --method M --help: this help with M's options (set with --option KEY=VALUE, K with "
                "--particles)")
    if method not in METHOD_OPTIONS:
        return f"{method!r} is not a built-in method (they are: {', '.join(METHOD_NAMES)}); `deepem list` shows them"
    lines = describe_options(METHOD_OPTIONS[method])
    return f"options of method {method} (--option KEY=VALUE; K with --particles):\n" + "\n".join(
        textwrap.fill(line, width=100, initial_indent="  ", subsequent_indent="      ") for line in lines)


def asked_method(argv: list[str]) -> str | None:
    """The --method (-m) of a `deepem train ... --help` command line: its options go into the help."""
    if "train" not in argv or not {"-h", "--help"} & set(argv):
        return None
    rest = argv[argv.index("train") + 1:]
    for i, word in enumerate(rest):
        if word in ("--method", "-m") and i + 1 < len(rest):
            return rest[i + 1]
        if word.startswith("--method="):
            return word.partition("=")[2]
        if word.startswith("-m") and len(word) > 2:
            return word[2:]
    return None


@quiet_on_broken_pipe
def main(argv: list[str] | None = None) -> int:
    own_command_line = argv is None  # the process's own command (not a test's, nor a rank's call)
    argv = list(sys.argv[1:] if argv is None else argv)
    if own_command_line:  # registered before torch and tqdm load: it runs after their exit handlers
        atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
    finished: list[int] = []  # the subcommand's exit code, once it has returned
    try:
        code = _main(argv, own_command_line, finished)
        if own_command_line:
            # The command is done and its outputs are whole. A Ctrl-C from here on lands in the interpreter's
            # teardown and would print a traceback (in an exit handler: tqdm's monitor thread, torch's) or kill
            # the process by the signal. In the exit handlers it ends the process with the command's code; after
            # them (the handler registered above) it is ignored while the interpreter frees its modules, which
            # would otherwise restore the default action of SIGINT (death by the signal, not the command's code).
            signal.signal(signal.SIGINT, lambda signum, frame: _leave(code))
    except KeyboardInterrupt:
        if finished:  # just after the subcommand returned: its work and its message are complete
            code = finished[0]
        else:  # before the subcommand started (plug-ins, parsing): nothing begun
            print("deepem: interrupted", file=sys.stderr)
            code = EXIT_INTERRUPTED
        if own_command_line:
            _leave(code)
    return code


def _leave(code: int) -> None:
    """End the process now with `code`, its messages flushed, without the interpreter's teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code)


def _main(argv: list[str], own_command_line: bool, finished: list[int]) -> int:
    try:
        load_plugins()  # DEEPEM_PLUGINS: the user's methods and estimators, before the parser offers them
    except UserError as err:
        print(f"deepem: error: {err}", file=sys.stderr)
        return 2
    args = build_parser(asked_method(argv)).parse_args(argv)
    if getattr(args, "nproc", 1) > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:  # (not in a launched job)
        try:  # before any process starts, and before torch is imported
            check_nproc(args, os.cpu_count() or 1)
        except UserError as err:
            print(f"deepem {args.command}: error: {err}", file=sys.stderr)
            return 2
    # Only now the library: torch and what the subcommand needs (deepem/dispatch.py).
    try:
        dispatch = importlib.import_module(DISPATCH)
    except KeyboardInterrupt:  # Ctrl-C while the library loads: nothing has started
        print(f"deepem {args.command}: interrupted", file=sys.stderr)
        dispatch = None
    code = EXIT_INTERRUPTED if dispatch is None else dispatch.run(args, argv, main)
    finished.append(code)
    if own_command_line and (code == EXIT_INTERRUPTED or args.command == "list"):
        # Ctrl-C (everything written is whole: atomic writes; the message is out) or `list` (it writes
        # nothing): the interpreter's teardown of torch alone takes seconds on a busy machine, and there is
        # nothing left to finish, so the process ends now.
        _leave(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
