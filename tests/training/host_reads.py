"""A guard for tests: inside `no_host_reads()`, any read of a tensor's value by the host fails the test.

On CUDA each such read waits for the device (a synchronisation) and cannot be captured in a CUDA graph;
on CPU it costs nothing, so CPU tests use this guard to find them. It refuses, through a TorchFunctionMode
(which sees every call Python makes on a tensor, the library's and torch's own Python code alike):

- conversions to Python values: bool(t), float(t), int(t), operator.index(t), t.item(), t.tolist(),
  t.numpy(), printing a tensor, and the ops that answer with a Python bool (torch.equal, allclose);
- ops whose output shape depends on the values (the device must tell the host how much it made):
  nonzero, argwhere, masked_select, unique, bincount, repeat_interleave with tensor repeats,
  one-argument where, and indexing or assigning with a boolean tensor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

#: conversions of a tensor to a Python value, and ops that answer with one
READS = frozenset({"__bool__", "__float__", "__int__", "__index__", "__complex__", "item", "tolist", "numpy",
                   "__repr__", "__format__", "equal", "allclose", "is_nonzero"})
#: ops whose output's shape depends on the values
VALUE_SHAPED = frozenset({"nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "_unique",
                          "_unique2", "bincount"})
#: indexing ops: refused with a boolean tensor index
INDEXING = frozenset({"__getitem__", "__setitem__", "index_put", "index_put_"})


class HostReadError(AssertionError):
    """A tensor's value was read on the host inside `no_host_reads`."""


def _has_bool_index(index: Any) -> bool:
    parts = index if isinstance(index, (tuple, list)) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class RefuseHostReads(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in READS or name in VALUE_SHAPED:
            raise HostReadError(f"host read: {name}")
        if name in INDEXING and len(args) > 1 and _has_bool_index(args[1]):
            raise HostReadError(f"host read: {name} with a boolean index (its shape depends on the values)")
        if name == "repeat_interleave" and isinstance(kwargs.get("repeats", args[1] if len(args) > 1 else None),
                                                      torch.Tensor):
            raise HostReadError("host read: repeat_interleave with tensor repeats")
        if name == "where" and len(args) + len(kwargs) == 1:
            raise HostReadError("host read: where(condition) (its shape depends on the values)")
        return func(*args, **kwargs)


@contextmanager
def no_host_reads() -> Iterator[None]:
    """Any host read of a tensor's value inside the block raises HostReadError."""
    with RefuseHostReads():
        yield
