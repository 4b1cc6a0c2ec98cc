"""Run one parsed `deepem` subcommand: the CLI (cli.py) parses its arguments without torch and imports
this module only then, so that `--help` and argument errors answer at once. Here the library is loaded:
torch's threads and allocator are set, an `--nproc` job is launched, the subcommand's body
(workflows/commands.py) runs, and its errors become exit codes: a UserError one line and exit 2,
Ctrl-C exit 130, anything else a bug with its traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from deepem.errors import UserError
from deepem.training.allocator import keep_freed_memory
from deepem.training.distributed import (
    EXIT_LOST_PEER,
    check_launched,
    default_threads,
    is_rank_zero,
    launched,
    local_world_size,
    lost_peer,
)
from deepem.workflows import commands
from deepem.workflows.launch import launch

EXIT_INTERRUPTED = 130  # the shell's code for a SIGINT


def run(args: argparse.Namespace, argv: list[str], entry: Callable[[list[str]], int]) -> int:
    """The exit code of the subcommand `args` (parsed from `argv`); `entry` is the CLI's main, which each
    rank of an --nproc job runs again."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # no page faults for the tensors every step allocates again (training/allocator.py)
    try:
        # --- scale-out (training/distributed.py, workflows/launch.py) ---
        nproc = getattr(args, "nproc", 1)
        if nproc > 1 and getattr(args, "seeds", None) is not None:
            raise UserError("--seeds and --nproc do not combine: vectorised seeds run in one process; leave out "
                            "one of them")
        if nproc > 1 and not launched():
            return launch(entry, argv, nproc, args.command, commands.after_failure(args))
        if launched():
            check_launched(nproc, args.command)
            if args.threads is None:  # ranks share the cores
                torch.set_num_threads(default_threads(local_world_size()))
        # --- end scale-out ---
        return getattr(commands, args.command_function)(args)
    except UserError as err:
        # A mistake the user can fix: its message says what and how, and a traceback would bury it. Anything
        # else is a bug and keeps its traceback. (Ranks > 0 of an --nproc job hit the same error as rank 0,
        # which reports it; a rank whose peer died says nothing: the launcher names the rank that died.)
        if launched() and lost_peer(err):
            return EXIT_LOST_PEER
        if is_rank_zero():
            print(f"deepem {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if launched() and lost_peer(err):  # a peer rank died: the launcher reports it
            return EXIT_LOST_PEER
        raise
    except KeyboardInterrupt:
        # Ctrl-C outside a training loop (which handles it itself, with a checkpoint): nothing half-written
        # is kept (every write is atomic), so the same command can simply be run again.
        again = {"train": "; an interrupted run resumes with --resume RUN", "compare": "; re-run the same command "
                 "to resume the comparison"}.get(args.command, "")
        print(f"deepem {args.command}: interrupted{again}", file=sys.stderr)
        return EXIT_INTERRUPTED
