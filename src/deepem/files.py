"""Crash-safe file writes: a reader sees the old file or the complete new one, never a torn one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
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


class OutputError(UserError, OSError):
    """An output path that cannot take the result: an existing file (without force), a folder, a folder
    that cannot be written, or a write that failed (disk full, read-only)."""


def check_outputs(paths: list[Path], force: bool = False, flag: str = "--force") -> None:
    """Refuse, before any work is done, output paths that `write_file_set` would fail on: a folder, an
    existing file unless `force`, a parent that is a file or a folder that cannot be written."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            raise OutputError(f"{path} is a folder; give the path of a file to write")
        if (path.exists() or path.is_symlink()) and not force:  # (a link to nothing is there too)
            raise OutputError(f"{path} exists; give {flag} to overwrite it, or another path")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent  # the nearest folder that exists: the write creates the ones below it
        if not parent.is_dir():
            raise OutputError(f"{path}: {parent} is not a folder, so nothing can be written under it")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"{path}: the folder {parent} cannot be written (permission denied or read-only); "
                              "give a path in a folder you can write")


def write_file_set(contents: dict[Path, bytes], force: bool = False, flag: str = "--force") -> list[Path]:
    """Write several files so that they appear together or not at all: each is first written (and fsynced)
    to a temporary file in its target folder, then all are renamed into place. Any failure or interruption
    (Ctrl-C, a full disk) removes the temporaries and undoes the renames already done, an overwritten file
    (force=True) coming back from a hard link kept until the end. Without force an existing target is
    refused, also one that appears while the files are written (another command writing the same path).
    Returns the paths written."""
    targets = [Path(p) for p in contents]
    check_outputs(targets, force, flag)
    temporaries: dict[Path, Path] = {}
    placed: list[Path] = []
    backups: dict[Path, Path] = {}
    try:
        for target, data in zip(targets, contents.values(), strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            temporaries[target] = _temporary_copy(target, data)
        for target in targets:
            _place(temporaries[target], target, force, placed, backups, flag)
    except BaseException as err:
        for target in reversed(placed):
            if target in backups:
                os.replace(backups.pop(target), target)
            else:
                target.unlink(missing_ok=True)
        for tmp in [*temporaries.values(), *backups.values()]:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            where = getattr(err, "filename", None) or targets[0]
            raise OutputError(f"could not write {where}: {err.strerror or err}; nothing was written") from err
        raise
    for backup in backups.values():
        backup.unlink(missing_ok=True)
    for folder in {t.parent for t in targets}:
        fsync_dir(folder)
    return targets


def _temporary_copy(target: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _place(tmp: Path, target: Path, force: bool, placed: list[Path], backups: dict[Path, Path], flag: str) -> None:
    """Rename `tmp` to `target` and note it in `placed`: without force only if `target` does not exist (a
    hard link fails if it does, atomically); with force keeping a hard link to the file it replaces, for
    the undo."""
    if not force:
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise OutputError(f"{target} exists (written meanwhile by something else); give {flag} to "
                              "overwrite it, or another path") from None
        except OSError:  # a file system without hard links: check, then rename
            if target.exists():
                raise OutputError(f"{target} exists; give {flag} to overwrite it, or another path") from None
            os.replace(tmp, target)
            placed.append(target)
            return
        placed.append(target)
        tmp.unlink()
        return
    existed = target.exists()
    if existed:
        backup = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.old")
        try:
            os.link(target, backup)
            backups[target] = backup
        except OSError:
            pass  # no hard links: the old file cannot come back if a later file fails
    undoable = target in backups or not existed
    if undoable:
        placed.append(target)  # (before the rename: the undo of a rename not done is harmless)
    os.replace(tmp, target)
    if not undoable:
        placed.append(target)
