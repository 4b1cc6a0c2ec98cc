"""Self-verifying checkpoints.

File layout: a magic line, the sha256 of the payload, then the payload (a torch.save of plain
tensors, numbers, strings, lists and dicts). Loading checks the hash before unpickling and unpickles
with weights_only=True, so a corrupted or crafted file is rejected without running any code: the hash
catches torn and bit-flipped files, weights_only catches a well-formed file whose pickle would call a
function (its checksum can be made to match by whoever crafted it)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deepem.errors import UserError
from deepem.files import atomic_write_bytes, sha256_bytes

MAGIC = b"DEEPEM-CHECKPOINT-1\n"
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")
QUARANTINE_SUFFIX = ".unusable"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is truncated, corrupted, or not a deepem checkpoint."""


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:09d}.pt"


def checkpoint_step(path: Path) -> int:
    """The step number in a checkpoint's file name."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise CheckpointError(f"{path} is not named like a checkpoint (ckpt-NNNNNNNNN.pt)")
    return int(match.group(1))


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint file holding `state`."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return MAGIC + sha256_bytes(payload).encode() + b"\n" + payload


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically: a crash leaves the previous file (or none), never a torn one."""
    atomic_write_bytes(Path(path), encode_checkpoint(state))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint; raise CheckpointError saying what is wrong with it."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read: {err}") from err
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a deepem checkpoint (bad header)")
    header_end = data.find(b"\n", len(MAGIC))
    if header_end < 0:
        raise CheckpointError(f"{path} is truncated (no checksum line)")
    expected = data[len(MAGIC):header_end].decode(errors="replace")
    payload = data[header_end + 1:]
    actual = sha256_bytes(payload)
    if actual != expected:
        raise CheckpointError(
            f"{path} is corrupted or truncated: payload sha256 {actual[:12]}... "
            f"!= recorded {expected[:12]}..."
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # weights_only refuses anything that would run code
        raise CheckpointError(f"{path} could not be loaded safely: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dictionary")
    return state


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in `folder`, oldest first."""
    if not Path(folder).is_dir():
        return []
    found = [p for p in Path(folder).iterdir() if _NAME.match(p.name)]
    return sorted(found, key=checkpoint_step)


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def quarantine(path: Path) -> Path:
    """Rename an unusable checkpoint out of the way (kept for inspection, never loaded or pruned), so
    that it cannot shadow the good checkpoints a resumed run writes after it."""
    target = Path(path).with_name(Path(path).name + QUARANTINE_SUFFIX)
    Path(path).replace(target)
    return target


def load_latest_good(folder: Path, map_location: str | torch.device = "cpu",
                     warn: Callable[[str], None] = print, validate: Callable[[dict], None] | None = None,
                     move_aside: bool = True) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies (and passes `validate`, which raises CheckpointError).

    Each unusable one is reported through `warn` and, with move_aside=True, renamed to
    `*.pt.unusable`. None when there is no usable checkpoint."""
    for path in reversed(list_checkpoints(folder)):
        try:
            state = load_checkpoint(path, map_location)
            if validate is not None:
                validate(state)
            return path, state
        except CheckpointError as err:
            note = ""
            if move_aside:
                try:
                    note = f"; moved aside to {quarantine(path).name}"
                except OSError:
                    pass
            warn(f"warning: skipping unusable checkpoint: {err}{note}")
    return None
