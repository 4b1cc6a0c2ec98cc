"""A user's own file end to end, as the CLI's `train --dataset PATH`, `impute --input --output` and
`score --input --output` need it: the dataset record a run keeps, reloading it (a changed file is
refused), and imputing or scoring any file with the run's columns, written back on the file's own scale.

Nothing is written unless every check passed: the input is read and checked, the model runs, and only
then are the outputs written (each atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepem.data.own_dataset import FileDataset, Standardization, file_units, load_file_dataset, model_rows
from deepem.data.table_writer import write_draws, write_table
from deepem.data.tables import TableError, TableFile, check_columns, read_table
from deepem.evaluation.own_rows import Progress, impute_rows, score_rows
from deepem.files import atomic_write_bytes, atomic_write_json, read_json
from deepem.models.likelihoods import check_rows
from deepem.models.lvm import DeepLatentModel

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


def impute_file(model: DeepLatentModel, record: dict[str, Any], input_path: str | Path,
                output_path: str | Path, particles: int = 1000, draws: int = 0, proposal: str = "zero-filled",
                seed: int = 0, long: bool = False, header: bool | None = None, batch_size: int = 100,
                progress: Progress | None = None) -> dict[str, Any]:
    """Fill the missing cells of `input_path` (any file with the run's columns) and write it, in its own
    format, to `output_path`; with draws=M also M multiple imputations (M files OUT_1 .. OUT_M, or with
    long=True one table with an `imputation` column). Returns a JSON-able summary."""
    table = read_rows(record, input_path, header)
    if Path(output_path).suffix.lower() != table.path.suffix.lower():
        raise TableError(f"{output_path}: the output must have the input's format ({table.path.suffix})")
    scale = Standardization.from_dict(record.get("standardization"))
    x, mask = model_rows(table, scale)
    check_rows(model.likelihood, x, mask, table.where, table.column, f"{table.path}: ")
    result = impute_rows(model, x, mask, particles, draws, proposal, seed, batch_size, progress=progress)
    written = [write_table(table, file_units(result.imputed, scale), output_path)]
    if result.draws is not None:
        target = Path(output_path).with_name(f"{Path(output_path).stem}_draws{Path(output_path).suffix}") \
            if long else output_path
        written += write_draws(table, np.stack([file_units(d, scale) for d in result.draws]), target, long)
    return {"input": str(table.path), "input_sha256": table.sha256, "rows": table.n_rows,
            "n_missing": result.n_missing, "estimator": result.estimator, **result.settings,
            "outputs": [str(p) for p in written]}


def score_file(model: DeepLatentModel, record: dict[str, Any], input_path: str | Path, output_path: str | Path,
               particles: int = 1000, proposal: str = "completed", seed: int = 0, header: bool | None = None,
               batch_size: int = 100, progress: Progress | None = None) -> dict[str, Any]:
    """Write each row's IW bound of log p(x) (log p(x_o) for incomplete rows) on the file's own scale to
    `output_path` (a CSV: row, n_observed, log_likelihood), and the estimator, K and seed beside it in
    OUTPUT.json. Returns that summary."""
    table = read_rows(record, input_path, header)
    scale = Standardization.from_dict(record.get("standardization"))
    x, mask = model_rows(table, scale)
    check_rows(model.likelihood, x, mask, table.where, table.column, f"{table.path}: ")
    complete = bool(mask.all())
    estimate = score_rows(model, x, None if complete else mask, particles, proposal, seed, batch_size,
                          progress=progress)
    per_row = estimate.per_point.numpy()
    if scale is not None:
        per_row = per_row + scale.log_jacobian(table.mask)
    lines = ["row,n_observed,log_likelihood\n"] + [
        f"{r},{int(n)},{float(v)!r}\n" for r, (n, v) in enumerate(zip(table.mask.sum(1), per_row, strict=True))]
    summary = {"input": str(table.path), "input_sha256": table.sha256, "rows": table.n_rows,
               "estimator": estimate.estimator, **estimate.settings,
               "units": "file's own scale" if scale is not None else "as in the file",
               "mean": float(per_row.mean()), "output": str(output_path)}
    atomic_write_bytes(Path(output_path), "".join(lines).encode())
    atomic_write_json(Path(f"{output_path}.json"), summary)
    return summary

