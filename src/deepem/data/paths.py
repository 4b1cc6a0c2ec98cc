"""Where dataset files live, and the error raised when one is missing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from deepem.errors import UserError

DATA_ENV_VAR = "DEEPEM_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/deepem")


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset file is not where the loader looked. The message lists every path searched."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else the environment variable DEEPEM_DATA, else ~/.cache/deepem."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_ENV_VAR) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def missing_data_message(dataset: str, searched: Sequence[Path], how: str) -> str:
    """A message that names the dataset, every path searched, and how to provide the data."""
    lines = [f"dataset {dataset!r}: no data file found. Searched:"]
    lines += [f"  - {p}" for p in searched]
    lines.append(how)
    lines.append(
        f"Point deepem at the directory holding the file with --data-dir DIR (CLI), "
        f"load_dataset(..., data_dir=DIR), or the environment variable {DATA_ENV_VAR}=DIR."
    )
    return "\n".join(lines)


def first_existing(candidates: Sequence[Path]) -> Path | None:
    """The first candidate that is an existing file, or None."""
    for path in candidates:
        if path.is_file():
            return path
    return None
