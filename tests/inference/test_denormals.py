"""Flush-to-zero reaches every intra-op thread inside `flush_denormals` and is undone on all of them."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

from deepem.inference.denormals import flush_denormals_everywhere, mxcsr_flushes, thread_wide_flush_supported
from deepem.inference.numerics import flush_denormals

X86_LINUX_OPENMP = (sys.platform == "linux" and platform.machine() == "x86_64"
                    and "OpenMP" in torch.__config__.parallel_info())
needs_x86 = pytest.mark.skipif(not X86_LINUX_OPENMP, reason="thread-wide flush needs x86-64 Linux, torch on OpenMP")
# far above the intra-op grain size (32768), so an element-wise op is split across both threads
N = 1 << 20


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def flushed_share(dtype: torch.dtype) -> float:
    """Share of denormal inputs that x * 1 turns into zero (DAZ), over a tensor both threads work on."""
    tiny = torch.finfo(dtype).tiny / 4  # a denormal
    x = torch.full((N,), tiny, dtype=dtype)
    return (x * 1.0 == 0).double().mean().item()


@needs_x86
def test_supported_on_x86_linux_with_openmp():
    assert thread_wide_flush_supported()


@needs_x86
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_thread_flushes_inside_and_none_after(two_threads, dtype):
    assert flushed_share(dtype) == 0.0
    with flush_denormals():
        assert mxcsr_flushes()
        assert flushed_share(dtype) == 1.0
    assert not mxcsr_flushes()
    assert flushed_share(dtype) == 0.0


@needs_x86
def test_nested_blocks_keep_flushing_until_the_outer_one_ends(two_threads):
    with flush_denormals_everywhere():
        with flush_denormals_everywhere():
            pass
        assert flushed_share(torch.float32) == 1.0
    assert flushed_share(torch.float32) == 0.0


@needs_x86
def test_a_callers_own_flush_setting_survives_the_block(two_threads):
    torch.set_flush_denormal(True)
    try:
        with flush_denormals():
            pass
        assert mxcsr_flushes()  # the caller had it on: it stays on
    finally:
        torch.set_flush_denormal(False)
        with flush_denormals():  # hands the caller's setting (now off) back to the workers too
            pass
    assert not mxcsr_flushes()
    assert flushed_share(torch.float32) == 0.0


def test_normal_numbers_are_untouched(two_threads):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 200, generator=g), torch.randn(200, 100, generator=g)
    expected = (a @ b).tanh().sum()
    with flush_denormals():
        assert torch.equal((a @ b).tanh().sum(), expected)


@needs_x86
def test_matrix_products_flush_on_every_thread(two_threads):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 200, generator=g) * 1e-36, torch.randn(200, 784, generator=g) * 1e-3
    tiny = torch.finfo(torch.float32).tiny

    def denormal_share(c: torch.Tensor) -> float:
        return ((c != 0) & (c.abs() < tiny)).float().mean().item()

    assert denormal_share(a @ b) > 0.5  # sums of 200 products of about 1e-39
    with flush_denormals():
        assert denormal_share(a @ b) == 0.0
