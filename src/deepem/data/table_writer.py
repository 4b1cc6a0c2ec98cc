"""Write imputed rows back in the format they came in (`tables.TableFile`).

A text file keeps its header, column order, delimiter, line endings and every line without a missing
cell as it was; in a line with missing cells only those cells are replaced, by the shortest decimal that
reads back as the same float64 (`repr`). An array file keeps its dtype and shape (and an .npz its other
arrays). Observed entries are never taken from the values given: they are the file's own. Files are
written atomically, after every check, so a refused call writes nothing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from deepem.data.tables import TableError, TableFile
from deepem.files import atomic_write_bytes

#: name of the column that numbers the imputations in a long table
IMPUTATION_COLUMN = "imputation"


def _check_values(table: TableFile, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != table.values.shape:
        raise ValueError(f"imputed values shaped {values.shape} do not match {table.path}'s {table.values.shape}")
    if not np.isfinite(values[~table.mask]).all():
        raise ValueError("an imputed value is not finite: the model or its inputs are broken")
    return values


def _cell(value: float) -> str:
    return repr(float(value))


def _line(table: TableFile, row: int, values: np.ndarray, extra: str | None = None) -> str:
    """Row `row` of a text table with its missing cells filled from `values` (and an extra last cell)."""
    raw = table.lines[table.row_lines[row]]
    body = raw.rstrip("\r\n")
    ending = raw[len(body):] or "\n"
    missing = ~table.mask[row]
    if missing.any():
        cells = body.split(table.delimiter)
        for j in np.flatnonzero(missing):
            cells[j] = _cell(values[row, j])
        body = table.delimiter.join(cells)
    if extra is not None:
        body = f"{body}{table.delimiter}{extra}"
    return body + ending


def _header(table: TableFile, extra: str | None = None) -> str:
    raw = table.lines[table.header_line] if table.header_line is not None else ""
    if not raw:
        return ""
    body = raw.rstrip("\r\n")
    ending = raw[len(body):] or "\n"
    return (f"{body}{table.delimiter}{extra}" if extra is not None else body) + ending


def text_bytes(table: TableFile, values: np.ndarray) -> bytes:
    """The text file with its missing cells filled (the lines before, between and after rows kept)."""
    filled = list(table.lines)
    for r in range(table.n_rows):
        filled[table.row_lines[r]] = _line(table, r, values)
    return "".join(filled).encode("utf-8")


def array_bytes(table: TableFile, values: np.ndarray) -> bytes:
    """The array file with missing entries filled, in its own dtype and shape."""
    merged = np.where(table.mask, table.values, values).astype(table.dtype).reshape(table.shape)
    buffer = io.BytesIO()
    if table.kind == "npy":
        np.save(buffer, merged, allow_pickle=False)
    else:
        with np.load(table.path, allow_pickle=False) as original:
            arrays = {k: original[k] for k in original.keys()}
        arrays[table.npz_key] = merged
        np.savez(buffer, **arrays)
    return buffer.getvalue()


def table_bytes(table: TableFile, values: np.ndarray) -> bytes:
    values = _check_values(table, values)
    return text_bytes(table, values) if table.lines else array_bytes(table, values)


def write_table(table: TableFile, values: np.ndarray, path: str | Path) -> Path:
    """Write `table` with its missing entries filled from `values` (N, D, the file's own scale) to `path`,
    in the table's format. Returns the path written."""
    path = Path(path)
    _check_suffix(table, path)
    atomic_write_bytes(path, table_bytes(table, values))
    return path


def draw_paths(path: str | Path, n_draws: int) -> list[Path]:
    """Where `write_draws` puts M files: OUT.csv -> OUT_1.csv .. OUT_M.csv."""
    path = Path(path)
    return [path.with_name(f"{path.stem}_{m + 1}{path.suffix}") for m in range(n_draws)]


def long_bytes(table: TableFile, draws: np.ndarray) -> bytes:
    """One text table with every imputation's rows, numbered 1..M in a last column `imputation`."""
    parts = [_header(table, IMPUTATION_COLUMN)]
    for m, values in enumerate(draws):
        parts += [_line(table, r, values, str(m + 1)) for r in range(table.n_rows)]
    return "".join(parts).encode("utf-8")


def draw_contents(table: TableFile, draws: np.ndarray, path: str | Path, long: bool = False) -> dict[Path, bytes]:
    """The files `write_draws` writes, by path, with their bytes (to write them with others as one set)."""
    path = Path(path)
    _check_suffix(table, path)
    draws = np.stack([_check_values(table, d) for d in np.asarray(draws)])
    if long:
        if not table.lines:
            raise TableError(f"{path}: a long table with an {IMPUTATION_COLUMN!r} column is for .csv / .tsv "
                             "files; write one array file per imputation instead")
        return {path: long_bytes(table, draws)}
    return dict(zip(draw_paths(path, len(draws)), [table_bytes(table, d) for d in draws], strict=True))


def write_draws(table: TableFile, draws: np.ndarray, path: str | Path, long: bool = False) -> list[Path]:
    """Write M multiple imputations (draws shaped (M, N, D)): M files beside `path` (`draw_paths`), or with
    long=True (text files only) one table at `path` with an `imputation` column. Returns the paths."""
    contents = draw_contents(table, draws, path, long)
    for target, data in contents.items():
        atomic_write_bytes(target, data)
    return list(contents)


def _check_suffix(table: TableFile, path: Path) -> None:
    if path.suffix.lower() != table.path.suffix.lower():
        raise TableError(f"{path}: the output must have the input's format ({table.path.suffix}); name it "
                         f"{path.with_suffix(table.path.suffix).name}")
