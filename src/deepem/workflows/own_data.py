"""A user's own file, as the CLI's `train --dataset PATH` needs it: the dataset record a run keeps,
reloading the dataset from it (a changed file is refused), the width of a table (for the table defaults),
and reading rows to impute or score with the run's columns (workflows/own_runs.py does that)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepem.data.own_dataset import FileDataset, load_file_dataset
from deepem.data.tables import TableFile, check_columns, read_table
from deepem.files import atomic_write_json, read_json

#: the run folder's record of a file dataset
RECORD_NAME = "data_file.json"


def save_dataset_record(run_dir: str | Path, dataset: FileDataset) -> Path:
    """Write `dataset.record()` (path, sha256, split, extra missingness, scale) to RUN/data_file.json."""
    path = Path(run_dir) / RECORD_NAME
    atomic_write_json(path, dataset.record())
    return path


def load_dataset_record(run_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / RECORD_NAME)


def reload_file_dataset(record: dict[str, Any]) -> FileDataset:
    """The dataset a run was trained on, rebuilt from its record (for resume and evaluation): the file
    must have the recorded sha256, and the same seed and fractions give the recorded rows."""
    split = record["split"]
    dataset = load_file_dataset(record["path"], split["seed"], tuple(split["fractions"]), record["header"],
                                record.get("npz_key"), record.get("missing"), record.get("missing_seed", 0),
                                sha256=record["sha256"])
    if dataset.split.to_dict() != split:
        raise ValueError(f"the split of {record['path']} drawn again differs from the recorded one")
    return dataset


def read_rows(record: dict[str, Any], path: str | Path, header: bool | None = None) -> TableFile:
    """Read rows to impute or score and check they have the run's columns (count, and names if both have
    a header). With header=None a text file has a header exactly when the training file had one."""
    header = record["header"] if header is None and Path(path).suffix.lower() in (".csv", ".tsv") else header
    table = read_table(path, header)
    check_columns(table, len(record["columns"]), record["columns"] if record["header"] else None)
    return table


def table_width(path: str | Path, header: bool | None = None) -> int | None:
    """The number of columns of a table file, for the table defaults (None: no such file, or images, which
    keep the image defaults)."""
    if not Path(path).expanduser().is_file():
        return None  # (resolve names the missing file)
    table = read_table(Path(path).expanduser(), header)
    return None if table.image_shape is not None else table.n_columns
