"""Every random number generator a run draws from, captured as plain tensors, ints and lists.

Checkpoints are loaded with `torch.load(weights_only=True)`, which accepts tensors and Python
primitives only, so numpy's and Python's generator states are unpacked into those here (a numpy
array or a tuple-with-objects would make the safe loader refuse the whole checkpoint)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy's global generator and Python's `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global generator is the one to seed)
    random.seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The state of torch (CPU, CUDA), numpy and Python generators, safe for weights_only loading."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (global state: what other code draws from)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": [int(v) for v in internal],
                   "gauss_next": None if gauss_next is None else float(gauss_next)},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every generator back to a state from `capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        s = state["numpy"]
        legacy = (s["kind"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached_gaussian"])
        np.random.set_state(legacy)  # noqa: NPY002
    if "python" in state:
        s = state["python"]
        random.setstate((s["version"], tuple(s["internal"]), s["gauss_next"]))
