"""Flush-to-zero on every thread that computes, not only the calling one.

Why: denormal (subnormal) floats make CPU arithmetic many times slower, and a backward pass through
self-normalised importance weights is full of them (a weight of 1e-35 times an activation of 1e-4 is a
denormal). `torch.set_flush_denormal(True)` sets the FTZ/DAZ bits of the *calling* thread's MXCSR only;
PyTorch's intra-op OpenMP workers, which run half of every matrix product and element-wise pass with
2 threads, keep their own. Here the bits are set on each thread of the OpenMP team by running glibc's
`fesetenv` as the body of a parallel region (libgomp's `GOMP_parallel`, called through ctypes: no
compiler, no Python on the workers), and the caller's previous environment is put back on all of them.

Where that is not possible (not x86-64 Linux with glibc, or torch not on libgomp) it falls back to the
calling thread only, as `torch.set_flush_denormal` does; `thread_wide_flush_supported()` says which."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import torch

#: x86-64 glibc fenv_t: the 28-byte x87 environment, then the SSE control/status register MXCSR
_FENV_BYTES, _MXCSR_OFFSET = 32, 28
_FTZ, _DAZ = 1 << 15, 1 << 6  # MXCSR flush-to-zero (results) and denormals-are-zero (inputs)


class _OpenMP:
    """libgomp's GOMP_parallel and libm's fegetenv/fesetenv, from the libraries this process has loaded."""

    def __init__(self, gomp_path: str) -> None:
        gomp = ctypes.CDLL(gomp_path)
        libm = ctypes.CDLL("libm.so.6")
        self.fegetenv = libm.fegetenv
        self.fegetenv.argtypes = [ctypes.c_void_p]
        self.fegetenv.restype = ctypes.c_int
        # the address of fesetenv itself: it becomes the body `void fn(void *data)` of the region
        self.fesetenv_ptr = ctypes.cast(libm.fesetenv, ctypes.c_void_p).value
        self.parallel = gomp.GOMP_parallel
        self.parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        self.parallel.restype = None

    def environment(self) -> ctypes.Array:
        env = ctypes.create_string_buffer(_FENV_BYTES)
        if self.fegetenv(env) != 0:
            raise OSError("fegetenv failed")
        return env

    def set_everywhere(self, env: ctypes.Array, threads: int) -> None:
        """fesetenv(env) on the calling thread and on every worker of its OpenMP team of `threads`."""
        self.parallel(self.fesetenv_ptr, ctypes.addressof(env), max(1, threads), 0)


def _loaded_libgomp() -> str | None:
    """Path of the libgomp torch runs its intra-op threads on: the one in torch's own folder if mapped
    (pip wheels bundle it), else the first this process has mapped (conda, distribution builds)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line}
    except OSError:
        return None
    paths = sorted(p for p in paths if p.startswith("/"))
    torch_dir = os.path.dirname(os.path.realpath(torch.__file__))
    own = [p for p in paths if os.path.realpath(p).startswith(torch_dir)]
    return (own or paths or [None])[0]


@lru_cache(maxsize=1)
def _openmp() -> _OpenMP | None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    path = _loaded_libgomp()
    if path is None:
        return None
    try:
        return _OpenMP(path)
    except (OSError, AttributeError):
        return None


def thread_wide_flush_supported() -> bool:
    """Whether `flush_denormals_everywhere` reaches torch's intra-op worker threads on this machine."""
    return _openmp() is not None


def mxcsr_flushes() -> bool:
    """Whether the calling thread currently flushes denormals (FTZ and DAZ both set); False off x86-64."""
    omp = _openmp()
    if omp is None:
        return False
    env = omp.environment()
    mxcsr = int.from_bytes(env.raw[_MXCSR_OFFSET:_MXCSR_OFFSET + 4], "little")
    return mxcsr & (_FTZ | _DAZ) == (_FTZ | _DAZ)


@contextmanager
def flush_denormals_everywhere() -> Iterator[None]:
    """Denormals read and written as zero inside the block, on the calling thread and every intra-op thread;
    afterwards every one of them gets the caller's previous floating-point environment back."""
    omp = _openmp()
    if omp is None:
        supported = torch.set_flush_denormal(True)
        try:
            yield
        finally:
            if supported:
                torch.set_flush_denormal(False)
        return
    saved = omp.environment()
    flushing = ctypes.create_string_buffer(saved.raw, _FENV_BYTES)
    mxcsr = int.from_bytes(saved.raw[_MXCSR_OFFSET:_MXCSR_OFFSET + 4], "little") | _FTZ | _DAZ
    flushing[_MXCSR_OFFSET:_MXCSR_OFFSET + 4] = mxcsr.to_bytes(4, "little")
    threads = torch.get_num_threads()
    omp.set_everywhere(flushing, threads)
    try:
        yield
    finally:
        omp.set_everywhere(saved, max(threads, torch.get_num_threads()))
