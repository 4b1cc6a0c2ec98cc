"""Errors meant for the user, and the helpers that word them.

A `UserError` is a mistake or a damaged input the user can fix: the CLI prints its message as one line on
stderr (`deepem CMD: error: ...`) and exits with status 2, without a traceback; every other exception is a
bug and keeps its traceback (exit status 1). Its message names the file
or setting at fault and says what to do. Concrete errors also derive from the builtin class that fits
(ValueError, OSError) so that library callers can keep catching those."""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class UserError(Exception):
    """An error whose message is meant for the user (one line, names what is wrong and the fix)."""


class InvalidInputError(UserError, ValueError):
    """A value or request the user gave that cannot be done as asked (the message says what to give)."""


class MissingResultError(UserError, FileNotFoundError):
    """A result a command needs (an evaluation of a run) has not been computed yet; the message says how."""


class ResultNotSavedError(UserError, OSError):
    """A result was computed but could not be written; `result` holds it so that it can still be shown."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


def not_saved_message(path: Path, err: OSError) -> str:
    """The one line for a result that could not be written (read-only folder, disk full, ...)."""
    return (f"the result above could not be written to {path} ({err.strerror or err}); make the run folder "
            "writable (or free disk space) and run the command again to save it")


class DamagedFileError(UserError, ValueError):
    """A data file exists but cannot be read: truncated, corrupt, empty, or not the expected format."""


class DataFileFormatError(UserError, ValueError):
    """A data file is readable but holds something the loader cannot use (e.g. a non-numeric cell)."""


def one_line(text: str) -> str:
    """`text` with its lines joined by '; ' (messages are printed as a single line on stderr)."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def damaged_file_message(dataset: str, path: Path, reason: str, expected_sha256: str | None = None) -> str:
    """'DATASET: PATH is damaged (REASON); replace it ...', with the sha256 the original file has when known."""
    try:
        got = f"sha256 {_sha256(path)}"
        if path.stat().st_size == 0:
            reason = "the file is empty, 0 bytes"
    except OSError:
        got = "unreadable"
    if expected_sha256 is not None:
        check = f"the original has sha256 {expected_sha256}, this file has {got}"
    else:
        check = f"this file has {got}"
    return (f"{dataset}: {path} is damaged ({one_line(reason) or 'unreadable'}; {check}); replace it with an "
            f"intact copy of the original and check it with `sha256sum {path}`")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def quiet_on_broken_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command's main so that a reader that goes away (`deepem list | head -1`) ends it quietly.

    The standard recipe (Python docs, signal module, "Note on SIGPIPE"): flush inside the try so the error
    surfaces here, then point stdout at devnull so the interpreter's own flush at exit cannot fail again."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            code = main(*args, **kwargs)
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1

    return wrapper
