"""`--nproc N`: start N ranks of a command on this machine with torch.distributed's own launcher (the
elastic launch API behind `torchrun --standalone`), and report how the job ended in one line.

The ranks run the same command line; each finds its rank in the environment the launcher sets
(training/distributed.py). If a rank dies, the launcher stops the others and the job fails: the
command's own checkpoints (training) make it resumable, and the message says how."""

from __future__ import annotations

import logging
import signal
import sys
import uuid
from collections.abc import Callable

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from deepem.errors import UserError
from deepem.training.distributed import EXIT_LOST_PEER

#: how ranks are started: "spawn" (a fresh interpreter, safe with threads); tests use "fork" (no re-import)
START_METHOD = "spawn"
EXIT_INTERRUPTED = 130  # a rank stopped by Ctrl-C (after a checkpoint)


def _rank(entry: Callable[[list[str]], int], argv: list[str]) -> int:
    """One rank: run the command; a failing rank exits with its code, so that the launcher notices at
    once and stops the others (a rank that merely returned would leave them waiting in a collective)."""
    code = entry(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    if code:
        sys.exit(code)
    return code


def launch(entry: Callable[[list[str]], int], argv: list[str], nproc: int, command: str,
           after_failure: str = "") -> int:
    """Run `entry(argv)` in `nproc` local ranks (gloo on CPU, NCCL on GPU, chosen by each rank); the
    exit code of the job: 0, the first failing rank's code, or 1 when a rank was killed by a signal.
    A message for the user, unless rank 0 reported a user error itself (exit code 2; the other ranks
    keep theirs to themselves, being the same): one line naming the rank, plus `after_failure`."""
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {nproc}")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"deepem-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.1, start_method=START_METHOD,
                          # Ctrl-C reaches the ranks from the terminal: each stops at a checkpoint of the
                          # same step; the launcher must not signal them a second time (an abort)
                          signals_to_handle="SIGTERM,SIGHUP,SIGQUIT")
    # The launcher's failure report is a page, and it logs each rank it terminates; ours is one line.
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    # (a killed rank leaves a semaphore behind; the resource tracker's warning about it is noise)
    sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        elastic_launch(config, _rank)(entry, argv)
    except ChildFailedError as err:
        # the rank that died of a signal, if one did: the others failed because it was gone
        # (else one that failed by itself; a rank that only lost its peer is named last)
        rank, failure = min(err.failures.items(), key=lambda kv: (kv[1].exitcode >= 0,
                                                                   kv[1].exitcode == EXIT_LOST_PEER,
                                                                   kv[1].timestamp))
        zero = err.failures.get(0)
        if zero is not None and zero.exitcode in (2, EXIT_INTERRUPTED):
            return zero.exitcode  # a user error or Ctrl-C: rank 0 said what happened (and how to resume)
        if any(f.exitcode == EXIT_INTERRUPTED or f.exitcode == -signal.SIGINT for f in err.failures.values()):
            # Ctrl-C reached the ranks from the terminal; one that stopped first is not a failure
            print(f"deepem {command}: interrupted" + (f". {after_failure}" if after_failure else ""),
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        if failure.exitcode < 0:
            how = f"was killed by {failure.signal_name()}"
        elif failure.exitcode == EXIT_LOST_PEER:  # the dead rank's own exit was not seen by the launcher
            how = "lost another rank (killed or crashed)"
        else:
            how = f"failed with exit code {failure.exitcode}"
        print(f"deepem {command}: rank {rank} of {nproc} {how}; the job was stopped"
              + (f". {after_failure}" if after_failure else ""), file=sys.stderr)
        return failure.exitcode if 0 < failure.exitcode != EXIT_LOST_PEER else 1
    except SignalException as sig:
        # Ctrl-C or SIGTERM: the ranks got it too and stopped at a checkpoint (rank 0 said where).
        print(f"deepem {command}: the job was stopped by {signal.Signals(sig.sigval).name}", file=sys.stderr)
        return 128 + int(sig.sigval)
    finally:
        signal.signal(signal.SIGINT, interrupt)
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
    return 0
