"""Keep freed memory inside the process, so that the large tensors every step allocates again cost no page
faults.

Why: glibc's malloc serves blocks above its mmap threshold (128 KiB to 32 MiB, adapted at run time) with
fresh pages from the kernel and hands them back on free. A training step allocates the same few
megabyte-sized tensors (the (K, B, D) logits and their gradients) every time, so each step pays a page
fault per 4 KiB page on first touch, hundreds per step (counted by benchmarks/profile_step.py; the
figures are on docs/speed.md, "Keeping freed memory"). With mmap off and the heap never trimmed, freed
blocks are reused.

The cost is that the process keeps its peak memory until it exits, which is what a training or evaluation
run wants (its peak recurs every step). `deepem` applies it at start-up on Linux with glibc; set
DEEPEM_KEEP_FREED_MEMORY=0 to leave malloc as it is. Elsewhere (macOS, musl) it does nothing."""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters of glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes an int: the largest threshold it accepts

ENV = "DEEPEM_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve every block from its heap (no mmap) and never give freed memory back.
    True when applied; False where malloc is not glibc's or the environment says not to."""
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # gnu_get_libc_version exists only in glibc: other C libraries may have a mallopt with other meanings.
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
