"""keep_freed_memory: a large tensor allocated again and again stops costing page faults."""

import subprocess
import sys

import pytest

# A 64 MiB tensor allocated, touched and freed 6 times (as K = 5000 evaluation does with its chunks of
# particles): glibc serves blocks above 32 MiB with fresh pages from the kernel every time, unless told to
# keep them. Prints the minor page faults of the last 4 rounds (the first two may grow the heap).
PROBE = """
import resource, sys, torch
from deepem.training.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
for _ in range(2):
    torch.ones(16 * 2**20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    torch.ones(16 * 2**20).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run_probe(mode: str, env: dict | None = None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    import os

    applied, kept = run_probe("keep")
    if applied != "True":
        pytest.skip("malloc is not glibc's")
    _, system = run_probe("system")
    # 4 rounds of 64 MiB are 65536 pages of 4 KiB (128 with transparent huge pages): the system allocator
    # faults them in every round, deepem's setting about never
    assert system >= 4 * 32
    assert kept < system / 10
    _, opted_out = run_probe("keep", env={**os.environ, "DEEPEM_KEEP_FREED_MEMORY": "0"})
    assert opted_out > system / 2


# The same rounds inside freed_memory_kept, then after it: kept inside, glibc's behaviour again after.
SCOPED = """
import resource, torch
from deepem.training.allocator import freed_memory_kept

def faults(numel=16 * 2**20):
    for _ in range(2):
        torch.ones(numel).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        torch.ones(numel).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

with freed_memory_kept() as applied:
    inside = faults()
print(applied, inside, faults(), faults(2**18))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_memory_is_kept_inside_the_scope_only():
    applied, inside, after, mid_size = subprocess.run([sys.executable, "-c", SCOPED], capture_output=True,
                                                      text=True, check=True).stdout.split()
    if applied != "True":
        pytest.skip("malloc is not glibc's")
    assert int(after) >= 4 * 32  # 64 MiB blocks come from the kernel again, and go back to it
    assert int(inside) < int(after) / 10
    # 1 MiB blocks stay in the heap afterwards, as glibc's adaptive threshold keeps them (4 rounds of 256
    # pages if they were mapped every time, as glibc's initial 128 KiB threshold would have them)
    assert int(mid_size) < 256
