"""Requests whose results would not fit in memory, refused before any work: many multiple imputations of
many rows (`--draws`, `impute_draws`) and many samples (`sample --n`, `TrainedModel.sample`) allocate all
their results at once, and a typo (an extra 0 or three) would otherwise run the machine out of memory
(swapping, then the kernel killing the process) instead of saying what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

from deepem.errors import InvalidInputError

#: bytes per number held: float64 on the data's own scale
NUMBER_BYTES = 8


class OutOfMemoryRequestError(InvalidInputError):
    """A request whose results need more memory than the machine has free."""


def available_memory() -> int | None:
    """Bytes of memory free for a new allocation (Linux: MemAvailable), None where it cannot be told."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def readable_bytes(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} PB"


def require_memory(needed: int, request: str, fix: str, available: int | None = None) -> None:
    """Refuse in one line a `request` whose results need `needed` bytes, more than is free (`available`,
    by default what the machine says), with the number and `fix` (how to ask for less)."""
    free = available_memory() if available is None else available
    if free is not None and needed > free:
        raise OutOfMemoryRequestError(f"{request} needs about {readable_bytes(needed)} of memory, more than the "
                                      f"{readable_bytes(free)} free on this machine; {fix}")
