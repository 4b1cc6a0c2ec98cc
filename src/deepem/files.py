"""Crash-safe file writes: a reader sees the old file or the complete new one, never a torn one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from deepem.errors import UserError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the folder entry is flushed (POSIX).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ChecksumError(UserError, ValueError):
    """A result file whose content does not match its recorded sha256 (torn or edited)."""


def atomic_write_json(path: Path, obj: Any, checksum: bool = False) -> None:
    """Write `obj` as JSON atomically; with checksum=True also write `<name>.sha256` beside it, in the
    format of `sha256sum`, so `sha256sum -c <name>.sha256` (or `read_json`) can verify it later."""
    data = (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()
    path = Path(path)
    atomic_write_bytes(path, data)
    if checksum:
        atomic_write_bytes(checksum_path(path), f"{sha256_bytes(data)}  {path.name}\n".encode())


def checksum_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def read_json(path: Path, verify: bool = True) -> Any:
    """Read a JSON file; when a `.sha256` file sits beside it and verify=True, check it first."""
    path = Path(path)
    data = path.read_bytes()
    sidecar = checksum_path(path)
    if verify and sidecar.is_file():
        recorded = sidecar.read_text().split()[:1]
        actual = sha256_bytes(data)
        if recorded != [actual]:
            raise ChecksumError(
                f"{path} does not match its checksum file {sidecar.name} (sha256 {actual[:12]}... != "
                f"{(recorded or ['nothing'])[0][:12]}...): the file was truncated or edited"
            )
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        raise ChecksumError(f"{path} is not valid JSON ({err}); the file is damaged") from err


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_json_lines(path: Path) -> list[Any]:
    """The records of a JSON-lines file (none if it does not exist); a line torn by a crash ends it."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of a .npy file (for atomic_write_bytes)."""
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()
