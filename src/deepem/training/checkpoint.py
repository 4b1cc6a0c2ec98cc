"""Self-verifying checkpoints.

File layout: a magic line, the sha256 of the payload, then the payload (a torch.save of plain
tensors, numbers, strings, lists and dicts). Loading checks the hash before unpickling and unpickles
with weights_only=True, so a corrupted or crafted file is rejected without running any code."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch

from deepem.training.files import atomic_write_bytes, sha256_bytes

MAGIC = b"DEEPEM-CHECKPOINT-1\n"
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that is truncated, corrupted, or not a deepem checkpoint."""


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:09d}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(Path(path), MAGIC + sha256_bytes(payload).encode() + b"\n" + payload)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint; raise CheckpointError saying what is wrong with it."""
    data = Path(path).read_bytes()
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
            f"{path} is corrupted or truncated: payload sha256 {actual[:12]}... != recorded {expected[:12]}..."
        )
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # weights_only refuses anything that would run code
        raise CheckpointError(f"{path} could not be loaded safely: {err}") from err


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in `folder`, oldest first."""
    if not Path(folder).is_dir():
        return []
    found = [p for p in Path(folder).iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def load_latest_good(folder: Path, map_location: str | torch.device = "cpu",
                     warn=print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies; bad ones are reported through `warn` and skipped."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path, map_location)
        except (CheckpointError, OSError) as err:
            warn(f"warning: skipping unusable checkpoint: {err}")
    return None
