"""Graceful stop on Ctrl-C (SIGINT) and SIGTERM.

The first signal only raises a flag: the trainer finishes the step in progress, writes a checkpoint
and stops. A second signal aborts at once (KeyboardInterrupt); checkpoint writes are atomic, so even
that cannot leave a torn file. The handler does no I/O itself: printing from a signal handler can
re-enter a stream that the interrupted code is writing to."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """Set by the handler; read by the training loop between steps."""

    signum: int | None = None
    count: int = 0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        """The shell convention for a process ended by a signal: 128 + signal number."""
        return 128 + self.signum if self.signum is not None else 0


@contextmanager
def graceful_stop(request: StopRequest, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """Route `signals` to `request` for the duration of the block, then restore the previous handlers.

    Signal handlers can only be installed from the main thread; elsewhere this does nothing (the
    caller's own handling applies)."""
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: object) -> None:
        request.count += 1
        if request.count > 1:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: aborting without a checkpoint")
        request.signum = signum

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
