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
DEEPEM_KEEP_FREED_MEMORY=0 to leave malloc as it is. Elsewhere (macOS, musl) it does nothing.

A library caller's process (the scikit-learn estimators, a Trainer in a notebook) gets it for the training
loop only (`freed_memory_kept`, training/loop.py): on the way out the freed memory is handed back
(malloc_trim) and large blocks are unmapped on free again. Where it mattered: DeepImputer on a 442 x 10
table paid about 230 page faults per update without it (benchmarks/results/small_table_fit-before.md)."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt parameters of glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes an int: the largest threshold it accepts
M_MMAP_THRESHOLD = -3
# What `freed_memory_kept` sets on the way out: glibc's default mmap count (malloc.c DEFAULT_MMAP_MAX), and the
# thresholds its adaptive rule reaches after freeing a large block (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit, trim at
# twice that). Any mallopt turns the adaptive rule off for good, and glibc's initial 128 KiB would then make
# every later step-sized tensor fault its pages in again.
DEFAULT_MMAP_MAX = 65536
ADAPTED_MMAP_THRESHOLD = 32 * 2**20
ADAPTED_TRIM_THRESHOLD = 2 * ADAPTED_MMAP_THRESHOLD

ENV = "DEEPEM_KEEP_FREED_MEMORY"


#: whether keep_freed_memory holds for the whole process (the CLI's start-up)
_PROCESS_WIDE = False


def _glibc() -> ctypes.CDLL | None:
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    except (OSError, AttributeError):
        return None
    # gnu_get_libc_version exists only in glibc: other C libraries may have a mallopt with other meanings.
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def _keep(libc: ctypes.CDLL) -> bool:
    return libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve every block from its heap (no mmap) and never give freed memory back,
    for the rest of the process. True when applied; False where malloc is not glibc's or the environment
    says not to."""
    global _PROCESS_WIDE
    libc = _glibc()
    _PROCESS_WIDE = libc is not None and _keep(libc)
    return _PROCESS_WIDE


@contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """keep_freed_memory for the body only (yields whether it applies); afterwards blocks above 32 MiB
    are mapped and unmapped again, more than 64 MiB free at the heap's top is given back (the limits glibc
    adapts to), and the freed memory is handed back now (malloc_trim). Nothing changes where the process
    keeps freed memory already, malloc is not glibc's or the environment says not to."""
    libc = None if _PROCESS_WIDE else _glibc()
    applied = libc is not None and _keep(libc)
    try:
        yield applied
    finally:
        if applied:
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_MMAP_THRESHOLD, ADAPTED_MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, ADAPTED_TRIM_THRESHOLD)
            libc.malloc_trim(ctypes.c_size_t(0))
