"""A run is a folder: config.json, metrics.jsonl, checkpoints/, evaluation.json, figures/.

config.json and result files are written atomically with a `sha256sum`-style checksum beside them;
metrics.jsonl is append-only and a line torn by a crash ends the usable log; a lock file keeps two
processes from training into the same folder at once."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepem.errors import UserError
from deepem.files import ChecksumError, atomic_write_bytes, atomic_write_json, read_json, read_json_lines

try:  # POSIX advisory locks; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunFolderError(UserError, ValueError):
    """A run folder that cannot be used as asked (exists already, is not a run, is in use)."""


@dataclass
class RunFolder:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def evaluation_path(self) -> Path:
        return self.root / "evaluation.json"

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def create(self, force: bool = False) -> None:
        """Make a fresh run folder. An existing non-empty folder is kept unless force=True, and a
        non-empty folder that is not a run is never deleted."""
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"{self.root} exists and is a file, not a folder; choose another --out")
        self._check_parents()
        if self.root.exists() and any(self.root.iterdir()):
            if not force:
                raise RunFolderError(
                    f"run folder {self.root} already exists and is not empty; pass --force to overwrite "
                    f"it or --resume {self.root} to continue the run in it"
                )
            if not self.is_run():
                raise RunFolderError(
                    f"{self.root} is not empty and is not a deepem run (no config.json); refusing to delete "
                    "it even with --force: choose another --out"
                )
            with self.lock():  # refuse to delete a run that another process is training
                pass
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _check_parents(self) -> None:
        """A folder cannot be made under a file (`--out notes.txt/run`): say which file is in the way."""
        for parent in self.root.absolute().parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RunFolderError(f"cannot make the run folder {self.root}: {parent} is a file, not a "
                                         "folder; choose another --out")
                return

    def require_run(self) -> None:
        if self.root.is_file():
            raise RunFolderError(f"{self.root} is a file, not a run folder; give the folder that holds config.json "
                                 f"and checkpoints/ (here perhaps {self.root.parent})")
        if not self.root.is_dir():
            raise RunFolderError(f"{self.root} does not exist, so it is not a deepem run folder; give the "
                                 "--out folder of a `deepem train` run")
        if not self.is_run():
            seeds = sorted(p.name for p in self.root.glob("seed-*") if (p / "config.json").is_file())
            if seeds:  # a vectorised-seeds group (train --seeds): one run per seed
                raise RunFolderError(
                    f"{self.root} holds the runs of a group of seeds ({', '.join(seeds)}), not one run; give one "
                    f"of them, e.g. {self.root / seeds[0]}")
            raise RunFolderError(
                f"{self.root} is not a deepem run folder (no config.json there); "
                "give the --out folder of a `deepem train` run"
            )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run for the duration; a second holder gets RunFolderError.
        The operating system releases it when the process dies, however it dies; a holder that ends
        normally also removes the lock file, so a finished run leaves no stale `.lock`."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        self._check_parents()
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunFolderError(
                    f"run folder {self.root} is in use by another deepem process (pid {holder}); wait for "
                    "it to finish or stop it first"
                ) from None
            # The holder before us may have removed the file between our open and our lock: then the lock
            # is on a file nobody else can find, and we lock the path's new file instead.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            try:  # removed while still locked, so no other process can have locked this file meanwhile
                os.unlink(path)
            except FileNotFoundError:  # (the folder was deleted, e.g. by create(force=True))
                pass
            os.close(fd)  # closing the descriptor releases the lock

    # configuration and results -------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config, checksum=True)

    def read_config(self) -> dict[str, Any]:
        self.require_run()
        try:
            config = read_json(self.config_path)
        except ChecksumError as err:
            raise RunFolderError(f"the run's configuration cannot be trusted: {err}") from err
        if not isinstance(config, dict):
            raise RunFolderError(f"{self.config_path} does not hold a configuration object")
        return config

    def write_result(self, name: str, obj: Any) -> Path:
        """Write a result file (e.g. 'evaluation.json') atomically, with its checksum file."""
        path = self.root / name
        atomic_write_json(path, obj, checksum=True)
        return path

    def read_result(self, name: str) -> Any:
        """Read a result file, verifying its checksum (ChecksumError if it was torn or edited)."""
        return read_json(self.root / name)

    # metrics ----------------------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_json_lines(self.metrics_path)  # a line torn by a crash ends the usable log

    def truncate_metrics(self, keep_records: int) -> None:
        """Keep only the first `keep_records` records: those written before the checkpoint a run
        resumes from. The resumed run writes the later ones again, exactly as they were."""
        kept = self.read_metrics()[:keep_records]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        atomic_write_bytes(self.metrics_path, text.encode())
