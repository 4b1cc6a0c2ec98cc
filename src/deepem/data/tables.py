"""A user's own file read as a table of numbers with an observed-data mask: `.csv`, `.tsv`, `.npy`, `.npz`.

Missing entries are empty cells, `NA` and `NaN` (any case) in text files and NaN in float arrays. A text
file is UTF-8 (a byte-order mark is allowed); a `.csv` is comma-separated and a `.tsv` tab-separated, but a
file whose first line holds none of its suffix's separator and one of `,` `;` or a tab is read with that one
(a semicolon-separated export is common; its decimal point must still be `.`). A text file keeps its raw
lines so that `table_writer` can copy observed cells back bit for bit; only the missing cells are ever
formatted anew. A header is detected (`detect_header`) unless the caller says. An array shaped (N, H, W)
is a stack of images, flattened to (N, H * W) rows with `image_shape` (H, W).

Everything wrong with a file is a `TableError` (a `UserError` and a `ValueError`): one line naming the
file, the line or index and the column, and what to do."""

from __future__ import annotations

import csv
import io
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepem.errors import UserError
from deepem.files import sha256_file

#: file suffixes read as tables, and the delimiter of the text ones
SUFFIXES = {".csv": ",", ".tsv": "\t", ".npy": None, ".npz": None}
#: cell texts (stripped, lower case) that mean "missing"
MISSING_TOKENS = ("", "na", "nan")
#: fewest rows a file must have to train on
MIN_TRAIN_ROWS = 10
#: largest magnitude a value may have: the model computes in float32, whose largest finite number this is
#: (it also keeps the float64 sums of squares of the standardisation finite)
LARGEST_VALUE = float(np.finfo(np.float32).max)
#: separators tried, in this order, when a text file's first line has none of its suffix's
OTHER_SEPARATORS = (",", ";", "\t")
#: how the first bytes of a file name the encodings we do not read
FOREIGN_BOMS = {b"\xff\xfe": "UTF-16 (little-endian)", b"\xfe\xff": "UTF-16 (big-endian)"}


class TableError(UserError, ValueError):
    """A user's data file cannot be used as it is (the message says where and what to do)."""


class NonNumericError(TableError, TypeError):
    """Rows given in Python as text or other objects rather than numbers (a ValueError, as numpy's own
    refusal of such rows was, and a TypeError)."""


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
    """Read a user's file (see the module notes). header: None = detect (`detect_header`), True / False =
    force. npz_key: the array to read from an .npz holding several. Raises TableError for anything
    `check_rows` refuses."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise TableError(f"{path}: cannot read {suffix or 'a file without a suffix'}; give a .csv, .tsv, .npy "
                         "or .npz file")
    if path.is_dir():
        raise TableError(f"{path}: is a directory, not a file; give the path of the data file inside it")
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


#: a number as a CSV holds one: decimal digits with an optional sign, point and exponent, or inf / infinity
#: (Python's float() also takes `1_000` and digits of other scripts, which are not numbers in a CSV)
CSV_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)", re.IGNORECASE | re.ASCII)
#: digits grouped in thousands by a separator (1,000 / 1 000 / 1_000 / 1'000)
GROUPED = re.compile(r"[+-]?\d{1,3}([,_ '])\d{3}(\1\d{3})*(\.\d*)?", re.ASCII)


def _number(text: str) -> float | None:
    bare = _bare(text)
    return float(bare) if CSV_NUMBER.fullmatch(bare) else None


def _python_number(text: str) -> bool:
    """Text Python's float() reads that `_number` does not (1_000, digits of other scripts)."""
    try:
        float(_bare(text))
    except ValueError:
        return False
    return not _missing(text)


def _decode(path: Path) -> list[str]:
    """The file's lines (endings kept), refusing text that is not UTF-8 with what it seems to be instead."""
    raw = path.read_bytes()
    foreign = next((name for bom, name in FOREIGN_BOMS.items() if raw.startswith(bom)), None)
    if foreign is not None:
        raise TableError(f"{path}: the file is {foreign} text; save it as UTF-8 text (e.g. 'Save as' CSV UTF-8, "
                         "or iconv -f UTF-16 -t UTF-8)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise TableError(f"{path}: line {line}: byte {raw[err.start]:#04x} is not UTF-8 text (perhaps Latin-1 "
                         "or Windows-1252); save the file as UTF-8 text") from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise TableError(f"{path}: line {line} holds a NUL byte: this is not a text table; save the data as "
                         "UTF-8 text")
    return io.StringIO(text, newline="").readlines()


def _separator(suffix: str, first: str) -> str:
    """The suffix's separator, or the one other separator the first line uses when it has none of it."""
    declared = SUFFIXES[suffix]
    if declared in first:
        return declared
    used = [s for s in OTHER_SEPARATORS if s != declared and s in first]
    return used[0] if len(used) == 1 else declared


def _whole(number: float) -> bool:
    return np.isfinite(number) and number == int(number)


def detect_header(path: Path, first: list[str], rows: list[list[str]]) -> bool:
    """Whether the first line (cells `first`, rows below it `rows`) names the columns, when the user did not
    say. It does when one of its cells is neither a number nor a missing token. A line of numbers only is a
    data row, unless it could as well be column names: distinct whole numbers that count the columns
    (0, 1, .. or 1, 2, ..) or that head rows holding other than whole numbers, in a file of more than one
    line. That case is refused, for the user to say which it is."""
    for j, cell in enumerate(first):  # (a grouped number is no column name: say what it is, not "a header")
        if _number(cell) is None and (GROUPED.fullmatch(_bare(cell)) or _python_number(cell)):
            raise TableError(f"{path}: line 1, column {j + 1}: {_not_a_number(cell, ',' if ',' in cell else ' ')}")
    if any(not _missing(c) and _number(c) is None for c in first):
        return True
    numbers = [_number(c) for c in first]
    if not rows or any(n is None or not _whole(n) for n in numbers) or len(set(numbers)) != len(numbers):
        return False
    counts = len(numbers) >= 2 and numbers in ([float(j) for j in range(len(numbers))],
                                               [float(j + 1) for j in range(len(numbers))])
    below = (_number(c) for row in rows for c in row if not _missing(c))
    fractional = any(n is not None and not _whole(n) for n in below)
    if counts or fractional:
        shown = ",".join(_bare(c) for c in first)
        raise TableError(f"{path}: line 1 ({shown[:40]}) holds only whole numbers: they may name the columns or "
                         "be a data row; say which: --header or --no-header (header=True / header=False in "
                         "Python)")
    return False


def _not_a_number(cell: str, delimiter: str) -> str:
    """Why a cell is not a number, with the likely cause when the cell shows one."""
    hint = "every cell must be a number, or empty / NA / NaN when missing"
    if GROUPED.fullmatch(_bare(cell)):
        grouped = _bare(cell)
        plain = re.sub(r"[,_ ']", "", grouped)
        hint = (f"it reads as digits grouped by a thousands separator, which a CSV number does not hold; write "
                f"{plain} (export the numbers without thousands separators)")
        if "," in grouped and "." not in grouped:
            hint += f", or if ',' is a decimal comma, export with '.' decimals ({grouped.replace(',', '.')})"
    elif delimiter != "," and "," in cell and _number(cell.replace(",", ".")) is not None:
        hint = "the decimal point must be '.', not ','; export the file with '.' decimals"
    elif any(s in cell for s in OTHER_SEPARATORS if s != delimiter):
        hint = f"the cell holds a separator other than {delimiter!r}; use one separator in the whole file"
    return f"{cell.strip()!r} is not a number; {hint}"


#: what to do when a header was expected (a run's training file had one, or --header) and line 1 is data
NO_HEADER_HINT = "if the file has no header line, say so: --no-header (header=False in Python)"


def _data_row(cells: list[str]) -> bool:
    """Cells that cannot be column names: numbers only, with an empty cell or one that is not whole."""
    numbers = [_number(c) for c in cells if not _missing(c)]
    return (None not in numbers and (len(numbers) < len(cells) or any(not _whole(n) for n in numbers)))


def _check_names(path: Path, names: list[str]) -> None:
    """Column names must be there and distinct: a nameless first column is most often a written row index."""
    for j, name in enumerate(names):
        if not name and _data_row(names):  # numbers and empty cells: a data row read as the header
            raise TableError(f"{path}: line 1 ({','.join(names)[:40]}) was taken as the header but holds only "
                             f"numbers and empty cells: a data row; {NO_HEADER_HINT}")
        if not name:
            raise TableError(f"{path}: column {j + 1} has no name in the header (line 1); name it, or remove the "
                             "column if it is a row index (pandas: to_csv(..., index=False)) or comes from a "
                             "separator at the end of each line")
        if name in names[:j]:
            raise TableError(f"{path}: column {j + 1} has the name {name!r} of column {names.index(name) + 1}; "
                             "give every column its own name")


def _read_text(path: Path, suffix: str, header: bool | None) -> TableFile:
    lines = _decode(path)
    content = [i for i, line in enumerate(lines) if line.strip()]
    if not content:
        raise TableError(f"{path}: the file holds no rows (only blank lines); give a row per data point")
    first = lines[content[0]].rstrip("\r\n")
    delimiter = _separator(suffix, first)
    if header is None:
        below = [lines[i].rstrip("\r\n").split(delimiter) for i in content[1:]]
        header = detect_header(path, first.split(delimiter), below)
    columns = next(csv.reader([first], delimiter=delimiter)) if header else []
    rows = content[1:] if header else content
    width = len(columns) if header else len(lines[rows[0]].rstrip("\r\n").split(delimiter)) if rows else 0
    if header:
        _check_names(path, [_bare(c) for c in columns])
    values = np.full((len(rows), width), np.nan)
    for r, index in enumerate(rows):
        cells = lines[index].rstrip("\r\n").split(delimiter)
        if '"' in lines[index]:
            _refuse_quoted_separator(path, index, lines[index].rstrip("\r\n"), delimiter, columns if header else [])
        if len(cells) != width:
            raise TableError(f"{path}: line {index + 1} has {len(cells)} cells, {_expected(width, header)}; "
                             "make every row the same length (leave a cell empty for a missing value)")
        for j, cell in enumerate(cells):
            if _missing(cell):
                continue
            number = _number(cell)
            name = f"column {j + 1} ({columns[j]!r})" if header else f"column {j + 1}"
            if number is None:
                raise TableError(f"{path}: line {index + 1}, {name}: {_not_a_number(cell, delimiter)}")
            values[r, j] = number
    names = [_bare(c) for c in columns] if header else [str(j + 1) for j in range(width)]
    return TableFile(path, suffix[1:], values, ~np.isnan(values), names, sha256_file(path), bool(header),
                     delimiter=delimiter, lines=lines, row_lines=rows,
                     header_line=content[0] if header else None)


def _refuse_quoted_separator(path: Path, index: int, line: str, delimiter: str, columns: list[str]) -> None:
    """Refuse a quoted cell holding the separator ("1,000"): the rows are split at every separator, so such
    a cell is never one number; most often it is a thousands separator a spreadsheet wrote."""
    for j, cell in enumerate(next(csv.reader([line], delimiter=delimiter))):
        if delimiter in cell:
            name = f"column {j + 1} ({columns[j]!r})" if j < len(columns) else f"column {j + 1}"
            raise TableError(f"{path}: line {index + 1}, {name}: {_not_a_number(cell, delimiter)} (a quoted cell "
                             "holding the separator is not read)")


def _expected(width: int, header: bool) -> str:
    return f"the header has {width}" if header else f"the first row has {width}"


#: the first bytes of a file numpy.save / numpy.savez wrote
MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}


def _pick(path: Path, loaded: np.lib.npyio.NpzFile, npz_key: str | None) -> tuple[str, np.ndarray]:
    keys = list(loaded.keys())
    if not keys:
        raise TableError(f"{path}: holds no arrays; save the data with numpy.save (an .npy) or numpy.savez")
    if npz_key is None and len(keys) != 1:
        first = keys[0]
        raise TableError(f"{path}: holds {len(keys)} arrays ({', '.join(keys)}), and which one is the data cannot "
                         f"be told; save that one alone, e.g. numpy.save('{first}.npy', numpy.load('{path.name}')"
                         f"['{first}']), and give the .npy")
    key = npz_key if npz_key is not None else keys[0]
    if key not in keys:
        raise TableError(f"{path}: has no array {key!r}; it holds {', '.join(keys)}")
    return key, loaded[key]


def _read_array(path: Path, suffix: str, npz_key: str | None) -> TableFile:
    with open(path, "rb") as f:
        if not f.read(len(MAGIC[suffix])) == MAGIC[suffix]:
            raise TableError(f"{path}: is not a file numpy wrote (a {suffix} file starts with "
                             f"{MAGIC[suffix]!r}); save the data with numpy.{'save' if suffix == '.npy' else 'savez'}"
                             ", or give a text table a .csv / .tsv name")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise TableError(f"{path}: holds Python objects (dtype object); save a float, integer or bool array, "
                             "e.g. numpy.save(path, x.astype(float))") from None
        raise TableError(f"{path}: not a readable {suffix} file ({err}); save it with numpy.save / "
                         "numpy.savez") from None
    except (OSError, EOFError) as err:
        raise TableError(f"{path}: not a readable {suffix} file ({err}); save it with numpy.save / "
                         "numpy.savez") from None
    key = None
    if suffix == ".npz":
        with loaded:
            try:
                key, array = _pick(path, loaded, npz_key)
            except ValueError as err:
                if isinstance(err, TableError):
                    raise
                raise TableError(f"{path}: its array holds Python objects (dtype object); save a float, "
                                 "integer or bool array") from None
    else:
        array = loaded
    name = f"array {key!r}" if key else "the array"
    if array.dtype.kind not in "fiub":
        raise TableError(f"{path}: {name} has dtype {array.dtype}; save a float, integer or bool array (NaN for "
                         "missing entries)")
    if array.ndim not in (2, 3):
        raise TableError(f"{path}: {name} has shape {array.shape} (rank {array.ndim}); save rows shaped (N, D) "
                         "or images shaped (N, H, W)")
    if array.shape[0] == 0:
        raise TableError(f"{path}: {name} has shape {array.shape}: no rows; give a row per data point")
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
    huge = np.abs(np.nan_to_num(table.values)) > LARGEST_VALUE
    if huge.any():
        r, j = _first(huge)
        raise TableError(f"{path}: {table.where(r)}, {table.column(j)}: {table.values[r, j]:g} is beyond "
                         f"{LARGEST_VALUE:.3g}, the largest number the model computes with (float32); rescale the "
                         "column (e.g. other units, or its logarithm), or leave the cell empty to mark it missing")
    empty_rows = ~table.mask.any(axis=1)
    if empty_rows.any():
        r = int(np.argmax(empty_rows))
        raise TableError(f"{path}: {table.where(r)} has no observed value; remove the row (nothing can be "
                         "learnt or imputed from it)")


def check_finite_table(x: np.ndarray, name: str = "X") -> None:
    """Refuse an array (N, D) of rows, NaN where missing, holding an infinite value or one beyond
    `LARGEST_VALUE` (float32's range: standardising or a float32 model would turn it into inf or NaN).
    One line names the row and column (0-based, as numpy counts) and what to do. For callers that take
    arrays rather than files (the scikit-learn estimators); files get the same check in `read_table`."""
    values = np.asarray(x, dtype=np.float64)
    bad = np.isinf(values) | (np.abs(np.nan_to_num(values)) > LARGEST_VALUE)
    if bad.any():
        r, j = (int(i) for i in np.argwhere(bad)[0])
        raise TableError(f"{name}[{r}, {j}] is {values[r, j]:g}: beyond {LARGEST_VALUE:.3g}, the largest number "
                         "the model computes with (float32); rescale the column (e.g. other units, or its "
                         "logarithm), or set the entry to NaN to mark it missing")


#: numpy dtype kinds that are numbers (bool, signed and unsigned integers, floats)
NUMERIC_KINDS = "biuf"


def _not_numeric(value: Any, text_only: bool) -> bool:
    """A cell of an object array that is not a number (None counts as missing); `text_only`: only str/bytes."""
    if text_only:
        return isinstance(value, (str, bytes))
    return value is not None and not (isinstance(value, numbers.Real) and not isinstance(value, (str, bytes)))


def refuse_non_numeric(x: Any, name: str = "x", text_only: bool = False) -> None:
    """Refuse in one line rows given as text or other non-numbers (strings, an object array holding a
    string), naming the first such cell and what to give instead, before numpy's own error deep inside.
    `text_only`: refuse text only (scikit-learn refuses other objects and complex numbers in its own words)."""
    try:
        values = np.asarray(x)
    except ValueError:  # (ragged rows: numpy refuses them before any cell is looked at)
        raise NonNumericError(f"{name} must be rows of equal length (an (N, D) array of numbers); its rows have "
                              "different lengths") from None
    if values.dtype.kind in NUMERIC_KINDS or values.size == 0:
        return
    if values.dtype.kind not in "OUSV":  # complex, dates, times
        if text_only:
            return
        raise NonNumericError(f"{name} has dtype {values.dtype}: give real numbers (a float array, NaN for a "
                              "missing cell)")
    flags = np.frompyfunc(lambda v: _not_numeric(v, text_only), 1, 1)(values).astype(bool)
    if not flags.any():
        return
    cells = np.argwhere(np.atleast_1d(flags))
    # the first cell that is not even a number written as text, else the first text cell
    where = next((tuple(c) for c in cells if not _text_number(np.atleast_1d(values)[tuple(c)])), tuple(cells[0]))
    cell = np.atleast_1d(values)[where]
    at = f"[{', '.join(str(int(i)) for i in where)}]"
    if isinstance(cell, (str, bytes)):
        raise NonNumericError(f"{name}{at} is text ({str(cell)!r}): give numbers (a float array, NaN for a missing "
                              "cell); convert the text first (numpy.asarray(x, dtype=float), pandas.to_numeric), or "
                              "give the file itself to the deepem command line, which reads numbers from text")
    raise NonNumericError(f"{name}{at} is a {type(cell).__name__} ({cell!r}), not a number: give numbers (a float "
                          "array, NaN for a missing cell)")


def _text_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, (str, bytes))


def check_trainable(table: TableFile, min_rows: int = MIN_TRAIN_ROWS) -> None:
    """Refuse a file too small to train on and a column never observed. A constant column is fine: it is
    standardised with std 1 (data/standardize.py) and the Gaussian's scale floor bounds its density."""
    path = table.path
    if table.n_rows < min_rows:
        raise TableError(f"{path}: only {table.n_rows} rows; training needs at least {min_rows} (add rows)")
    never = ~table.mask.any(axis=0)
    if never.any():
        j = int(np.argmax(never))
        raise TableError(f"{path}: {table.column(j)} is missing in every row; remove the column")


def check_columns(table: TableFile, n_columns: int, columns: list[str] | None = None) -> None:
    """Refuse new rows whose columns are not the run's: a different count (or different header names)."""
    if table.n_columns != n_columns:
        raise TableError(f"{table.path}: has {table.n_columns} columns but the model was trained on "
                         f"{n_columns}; give rows with the training file's columns, in its order")
    if columns is not None and table.has_header and [c.strip() for c in table.columns] != list(columns):
        diff = next(j for j, (a, b) in enumerate(zip(table.columns, columns, strict=True)) if a != b)
        if all(_number(c) is not None for c in table.columns):  # line 1 is a row of numbers: data, no header
            raise TableError(f"{table.path}: line 1 holds numbers where the model's column names "
                             f"({', '.join(columns)[:60]}) were expected; {NO_HEADER_HINT}")
        raise TableError(f"{table.path}: {table.column(diff)} is {table.columns[diff]!r} but the model's column "
                         f"{diff + 1} is {columns[diff]!r}; give the training file's columns, in its order")
