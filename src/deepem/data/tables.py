"""A user's own file read as a table of numbers with an observed-data mask: `.csv`, `.tsv`, `.npy`, `.npz`.

Missing entries are empty cells, `NA` and `NaN` (any case) in text files and NaN in float arrays. A text
file keeps its raw lines so that `table_writer` can copy observed cells back bit for bit; only the
missing cells are ever formatted anew. An array shaped (N, H, W) is a stack of images, flattened to
(N, H * W) rows with `image_shape` (H, W).

Everything wrong with a file is a `TableError` (a `UserError` and a `ValueError`): one line naming the
file, the line or index and the column, and what to do."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepem.errors import UserError
from deepem.files import sha256_file

#: file suffixes read as tables, and the delimiter of the text ones
SUFFIXES = {".csv": ",", ".tsv": "\t", ".npy": None, ".npz": None}
#: cell texts (stripped, lower case) that mean "missing"
MISSING_TOKENS = ("", "na", "nan")
#: fewest rows a file must have to train on
MIN_TRAIN_ROWS = 10


class TableError(UserError, ValueError):
    """A user's data file cannot be used as it is (the message says where and what to do)."""


@dataclass
class TableFile:
    """A file's rows as float64 `values` (N, D; NaN where missing) with `mask` (True = observed).

    kind: "csv", "tsv", "npy" or "npz"; columns: header names, or "1".."D" without a header;
    lines / row_lines / header_line: a text file's raw lines (endings kept), the line index of every row
        and of the header;
    dtype / shape / npz_key: an array file's own dtype, shape and the array's name in an .npz."""

    path: Path
    kind: str
    values: np.ndarray
    mask: np.ndarray
    columns: list[str]
    sha256: str
    has_header: bool = False
    image_shape: tuple[int, int] | None = None
    delimiter: str | None = None
    lines: list[str] = field(default_factory=list)
    row_lines: list[int] = field(default_factory=list)
    header_line: int | None = None
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    npz_key: str | None = None

    @property
    def n_rows(self) -> int:
        return self.values.shape[0]

    @property
    def n_columns(self) -> int:
        return self.values.shape[1]

    def where(self, row: int) -> str:
        """'line L' of a text file (1-based, as an editor counts) or 'row R' of an array (0-based)."""
        return f"line {self.row_lines[row] + 1}" if self.lines else f"row {row}"

    def column(self, j: int) -> str:
        """'column J' (1-based) with its header name when there is one."""
        return f"column {j + 1} ({self.columns[j]!r})" if self.has_header else f"column {j + 1}"


def is_table_path(name: str | Path) -> bool:
    """True when `name` is an existing file with a suffix `read_table` reads."""
    path = Path(name).expanduser()
    return path.suffix.lower() in SUFFIXES and path.is_file()


def read_table(path: str | Path, header: bool | None = None, npz_key: str | None = None) -> TableFile:
    """Read a user's file (see the module notes). header: None = detect (a first line with a cell that is
    neither a number nor a missing token is a header), True / False = force. npz_key: the array to read
    from an .npz holding several. Raises TableError for anything `check_rows` refuses."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise TableError(f"{path}: cannot read {suffix or 'a file without a suffix'}; give a .csv, .tsv, .npy "
                         "or .npz file")
    if not path.is_file():
        raise TableError(f"{path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise TableError(f"{path}: the file is empty (0 bytes); give a file with a row per data point")
    table = _read_text(path, suffix, header) if SUFFIXES[suffix] else _read_array(path, suffix, npz_key)
    check_rows(table)
    return table


def _bare(text: str) -> str:
    """A cell without surrounding blanks, quotes, or the byte-order mark some editors put first."""
    return text.lstrip("\ufeff").strip().strip('"')


def _missing(text: str) -> bool:
    return _bare(text).lower() in MISSING_TOKENS


def _number(text: str) -> float | None:
    try:
        return float(_bare(text))
    except ValueError:
        return None


def _read_text(path: Path, suffix: str, header: bool | None) -> TableFile:
    delimiter = SUFFIXES[suffix]
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.readlines()
    except UnicodeDecodeError as err:
        raise TableError(f"{path}: byte {err.start} is not UTF-8 text; save the file as UTF-8 text") from None
    content = [i for i, line in enumerate(lines) if line.strip()]
    if not content:
        raise TableError(f"{path}: the file holds no rows (only blank lines); give a row per data point")
    first = lines[content[0]].rstrip("\r\n")
    if header is None:
        header = any(not _missing(c) and _number(c) is None for c in first.split(delimiter))
    columns = next(csv.reader([first], delimiter=delimiter)) if header else []
    rows = content[1:] if header else content
    width = len(columns) if header else len(lines[rows[0]].rstrip("\r\n").split(delimiter)) if rows else 0
    values = np.full((len(rows), width), np.nan)
    for r, index in enumerate(rows):
        cells = lines[index].rstrip("\r\n").split(delimiter)
        if len(cells) != width:
            raise TableError(f"{path}: line {index + 1} has {len(cells)} cells, {_expected(width, header)}; "
                             "make every row the same length (leave a cell empty for a missing value)")
        for j, cell in enumerate(cells):
            if _missing(cell):
                continue
            number = _number(cell)
            name = f"column {j + 1} ({columns[j]!r})" if header else f"column {j + 1}"
            if number is None:
                raise TableError(f"{path}: line {index + 1}, {name}: {cell.strip()!r} is not a number; every "
                                 "cell must be a number, or empty / NA / NaN when missing")
            values[r, j] = number
    names = [_bare(c) for c in columns] if header else [str(j + 1) for j in range(width)]
    return TableFile(path, suffix[1:], values, ~np.isnan(values), names, sha256_file(path), bool(header),
                     delimiter=delimiter, lines=lines, row_lines=rows,
                     header_line=content[0] if header else None)


def _expected(width: int, header: bool) -> str:
    return f"the header has {width}" if header else f"the first row has {width}"


def _read_array(path: Path, suffix: str, npz_key: str | None) -> TableFile:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise TableError(f"{path}: not a readable {suffix} file ({err}); save it with numpy.save / "
                         "numpy.savez") from None
    key = None
    if suffix == ".npz":
        with loaded:
            keys = list(loaded.keys())
            if npz_key is None and len(keys) != 1:
                raise TableError(f"{path}: holds {len(keys)} arrays ({', '.join(keys) or 'none'}); name the one "
                                 "to use (npz_key) or save a single array")
            key = npz_key if npz_key is not None else keys[0]
            if key not in keys:
                raise TableError(f"{path}: has no array {key!r}; it holds {', '.join(keys)}")
            array = loaded[key]
    else:
        array = loaded
    if array.dtype.kind not in "fiub":
        raise TableError(f"{path}: array {key or ''} has dtype {array.dtype}; save a float, integer or bool "
                         "array (NaN for missing entries)")
    if array.ndim not in (2, 3):
        raise TableError(f"{path}: array {key or ''} has shape {array.shape} (rank {array.ndim}); save rows "
                         "shaped (N, D) or images shaped (N, H, W)")
    values = array.reshape(array.shape[0], -1).astype(np.float64)
    image_shape = tuple(array.shape[1:]) if array.ndim == 3 else None
    return TableFile(path, suffix[1:], values, ~np.isnan(values), [str(j + 1) for j in range(values.shape[1])],
                     sha256_file(path), image_shape=image_shape, dtype=str(array.dtype), shape=array.shape,
                     npz_key=key)


def _first(flags: np.ndarray) -> tuple[int, int]:
    r, c = np.argwhere(flags)[0]
    return int(r), int(c)


def check_rows(table: TableFile) -> None:
    """Refuse what no use of a table can take: no rows, no columns, Inf, a row with nothing observed."""
    path = table.path
    if table.n_rows == 0 or table.n_columns == 0:
        raise TableError(f"{path}: the file holds no data ({table.n_rows} rows, {table.n_columns} columns); "
                         "give a row per data point")
    infinite = np.isinf(table.values)
    if infinite.any():
        r, j = _first(infinite)
        raise TableError(f"{path}: {table.where(r)}, {table.column(j)} is infinite; replace it by a finite "
                         "number, or leave it empty to mark it missing")
    empty_rows = ~table.mask.any(axis=1)
    if empty_rows.any():
        r = int(np.argmax(empty_rows))
        raise TableError(f"{path}: {table.where(r)} has no observed value; remove the row (nothing can be "
                         "learnt or imputed from it)")


def check_trainable(table: TableFile, min_rows: int = MIN_TRAIN_ROWS) -> None:
    """Refuse a file too small to train on, a column never observed, and (tables) a constant column."""
    path = table.path
    if table.n_rows < min_rows:
        raise TableError(f"{path}: only {table.n_rows} rows; training needs at least {min_rows} (add rows)")
    never = ~table.mask.any(axis=0)
    if never.any():
        j = int(np.argmax(never))
        raise TableError(f"{path}: {table.column(j)} is missing in every row; remove the column")
    if table.image_shape is not None:
        return  # image borders are often constant: that is fine for a Bernoulli pixel
    for j in range(table.n_columns):
        seen = table.values[table.mask[:, j], j]
        if seen.size and np.all(seen == seen[0]):
            raise TableError(f"{path}: {table.column(j)} holds the same value ({seen[0]:g}) in every observed "
                             "row; remove the column (it cannot be standardised)")


def check_columns(table: TableFile, n_columns: int, columns: list[str] | None = None) -> None:
    """Refuse new rows whose columns are not the run's: a different count (or different header names)."""
    if table.n_columns != n_columns:
        raise TableError(f"{table.path}: has {table.n_columns} columns but the model was trained on "
                         f"{n_columns}; give rows with the training file's columns, in its order")
    if columns is not None and table.has_header and [c.strip() for c in table.columns] != list(columns):
        diff = next(j for j, (a, b) in enumerate(zip(table.columns, columns, strict=True)) if a != b)
        raise TableError(f"{table.path}: {table.column(diff)} is {table.columns[diff]!r} but the model's column "
                         f"{diff + 1} is {columns[diff]!r}; give the training file's columns, in its order")
