"""Checksum-verified downloads with the standard library.

A file is streamed to a temporary file next to its destination, hashed while it arrives, fsync'ed, and
only moved into place (os.replace, atomic on one file system) once its sha256 matches. So the cache
never holds a partial or corrupt file under the real name, and an interrupted download leaves at most a
`.part` file that the next attempt ignores."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deepem.data.paths import DATA_ENV_VAR, DatasetNotFoundError, missing_data_message
from deepem.errors import UserError
from deepem.files import fsync_dir

TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20
USER_AGENT = "deepem-data/0.1 (python urllib)"


class DownloadError(UserError, OSError):
    """No mirror delivered the file (network failure, HTTP error, or checksum mismatch)."""


class ChecksumMismatchError(DownloadError):
    """A file's sha256 differs from the pinned one."""


@dataclass(frozen=True)
class RemoteFile:
    """A file with its pinned sha256 (None = not pinned: accepted, with a warning that shows its hash)."""

    filename: str
    sha256: str | None


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_urls(filename: str, mirrors: Sequence[str], env_var: str | None = None) -> list[str]:
    """Full URLs to try, in order: the base URL in `env_var` (if set) first, then each mirror.
    A mirror is a base URL (the file name is appended) unless it already ends with the file name."""
    bases = list(mirrors)
    if env_var and os.environ.get(env_var):
        bases.insert(0, os.environ[env_var])
    urls = []
    for base in bases:
        urls.append(base if base.endswith("/" + filename) else base.rstrip("/") + "/" + filename)
    return urls


def fetch_url(url: str, dest: Path, sha256: str | None, timeout: float = TIMEOUT_S) -> str:
    """Download `url` to `dest` atomically and return the file's sha256. With a pinned `sha256`, a
    mismatch deletes the temporary file and raises ChecksumMismatchError; `dest` is never touched then.
    Network errors propagate (urllib.error.URLError, OSError, TimeoutError)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if sha256 is not None and got != sha256.lower():
            raise ChecksumMismatchError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}. "
                "The download was deleted; the mirror may serve a different or corrupted file.")
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        return got
    finally:
        tmp.unlink(missing_ok=True)


def download_file(remote: RemoteFile, dest_dir: Path, urls: Sequence[str], dataset: str) -> Path:
    """Fetch `remote` into `dest_dir`, trying each URL in turn until one delivers the right bytes. When none
    does, the folders this call created are removed again, so a failed attempt leaves nothing behind."""
    dest = dest_dir / remote.filename
    created = _missing_folders(dest_dir)
    try:
        return _download_from_mirrors(remote, dest, urls, dataset)
    except BaseException:
        for folder in created:  # deepest first; a folder that is not empty (another process) is kept
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _download_from_mirrors(remote: RemoteFile, dest: Path, urls: Sequence[str], dataset: str) -> Path:
    failures: list[str] = []
    mismatch = False
    for url in urls:
        print(f"deepem: downloading {remote.filename} for {dataset!r} from {url}", file=sys.stderr)
        try:
            got = fetch_url(url, dest, remote.sha256)
        except ChecksumMismatchError as err:
            mismatch = True
            failures.append(str(err))
            continue
        except (urllib.error.URLError, OSError, ValueError) as err:  # ValueError: malformed URL
            failures.append(f"{url}: {err}")
            continue
        if remote.sha256 is None:
            warnings.warn(f"{dataset}: {remote.filename} has no pinned checksum in deepem; downloaded "
                          f"from {url} with sha256 {got}. Compare it with a trusted copy.", stacklevel=4)
        return dest
    error = ChecksumMismatchError if mismatch else DownloadError
    why = "no source delivered the expected file" if mismatch else "no source could be reached (check the network)"
    # One line: the CLI prints it as is, after the 'downloading ...' lines.
    raise error(
        f"could not download {remote.filename} for dataset {dataset!r}: {why}; tried " + "; ".join(failures)
        + f". To install it by hand, download {remote.filename} from one of those URLs, check its sha256 "
        f"({remote.sha256 or 'not pinned'}), and put it at {dest}; or set {DATA_ENV_VAR} / --data-dir to a "
        "directory that holds it")


def ensure_file(remote: RemoteFile, dest_dir: Path, urls: Sequence[str], dataset: str, download: bool,
                also_search: Sequence[Path] = ()) -> Path:
    """The local path of `remote`: an existing file in `dest_dir` (or at one of `also_search`), else a fresh
    download (if allowed). A cached file with a pinned checksum is verified, so a corrupt or wrong file is
    reported rather than silently used."""
    dest = dest_dir / remote.filename
    for path in (dest, *also_search):
        if path.is_file():
            if remote.sha256 is not None:
                got = sha256_of(path)
                if got != remote.sha256.lower():
                    raise ChecksumMismatchError(
                        f"{dataset}: {path} has sha256 {got}, expected {remote.sha256}. "
                        "Delete it to download it again, or replace it with the original file.")
            return path
    if not download:
        raise DatasetNotFoundError(missing_data_message(
            dataset, [dest, *also_search],
            f"Downloading is switched off (download=False). Get {remote.filename} from "
            f"{' or '.join(urls)} and put it at {dest}, or allow the download."))
    return download_file(remote, dest_dir, urls, dataset)
