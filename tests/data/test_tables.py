"""A user's file read as a table (data/tables.py) and written back (data/table_writer.py): missing
tokens, header detection, images, every bad input as one line naming file, line and column, and
observed cells copied back bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from deepem.data.table_writer import draw_paths, write_draws, write_table
from deepem.data.tables import TableError, check_columns, check_finite_table, check_trainable, read_table
from deepem.errors import UserError

ROWS = ["1.50,2,3e1", "NA,4.000,5", "6,,NaN", "-7,8,9", "1,2,3", "4,5,6", "7,8,9", "2,2,2", "3,1,0", "0.1,0.2,0.3"]


def write(tmp_path, text: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_csv_missing_tokens_header_and_mask(tmp_path):
    table = read_table(write(tmp_path, "a,b,c\n" + "\n".join(ROWS) + "\n"))
    assert table.has_header and table.columns == ["a", "b", "c"] and table.values.shape == (10, 3)
    assert table.mask[:3].tolist() == [[True, True, True], [False, True, True], [True, False, False]]
    assert table.values[0].tolist() == [1.5, 2.0, 30.0] and np.isnan(table.values[1, 0])
    headless = read_table(write(tmp_path, "\n".join(ROWS) + "\n", "h.csv"))
    assert not headless.has_header and headless.columns == ["1", "2", "3"] and headless.n_rows == 10
    forced = read_table(write(tmp_path, "\n".join(ROWS) + "\n", "f.csv"), header=True)
    assert forced.has_header and forced.n_rows == 9 and forced.columns == ["1.50", "2", "3e1"]
    bom = read_table(write(tmp_path, "\ufeffa,b\n1,2\n", "bom.csv"))
    assert bom.columns == ["a", "b"] and bom.has_header
    assert read_table(write(tmp_path, "\ufeff1,2\n", "bom2.csv")).values.tolist() == [[1.0, 2.0]]
    tsv = read_table(write(tmp_path, "x\ty\n1\t\n2\t3\n", "t.tsv"))
    assert tsv.delimiter == "\t" and tsv.mask.tolist() == [[True, False], [True, True]]


def test_arrays_and_images(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    rows[1, 2] = np.nan
    np.save(tmp_path / "r.npy", rows)
    table = read_table(tmp_path / "r.npy")
    assert table.dtype == "float32" and table.image_shape is None and not table.mask[1, 2]
    images = np.zeros((5, 2, 3), dtype=np.uint8)
    images[0, 0, 0] = 1
    np.savez(tmp_path / "i.npz", images=images)
    table = read_table(tmp_path / "i.npz")
    assert table.image_shape == (2, 3) and table.values.shape == (5, 6) and table.npz_key == "images"


@pytest.mark.parametrize(("text", "where"), [
    ("a,b\n1,2\n3\n", "line 3 has 1 cells, the header has 2"),
    ("a,b\n1,2\n3,x\n", "line 3, column 2 ('b'): 'x' is not a number"),
    ("5,2\n3,abc\n", "line 2, column 2: 'abc' is not a number"),
    ("a,b\n1,2\n,\n", "line 3 has no observed value"),
    ("a,b\n1,inf\n", "line 2, column 2 ('b') is infinite"),
    ("\n\n", "holds no rows"),
    ("", "the file is empty"),
])
def test_bad_text_files_are_one_line_naming_file_line_and_column(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(TableError) as caught:
        read_table(path)
    message = str(caught.value)
    assert where in message and str(path) in message and "\n" not in message
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("rows", "where"), [
    ([[1, np.nan]] * 12, "column 2 is missing in every row"),
    ([[1, 2], [2, 3]], "only 2 rows; training needs at least 10"),
])
def test_files_that_cannot_be_trained_on(tmp_path, rows, where):
    np.save(tmp_path / "x.npy", np.array(rows, dtype=np.float64))
    table = read_table(tmp_path / "x.npy")
    with pytest.raises(TableError, match=str(tmp_path)) as caught:
        check_trainable(table)
    assert where in str(caught.value)


def test_a_constant_column_can_be_trained_on(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[i, 7.0] for i in range(12)]))
    check_trainable(read_table(tmp_path / "x.npy"))  # standardised with std 1 (tests/sklearn/test_same_as_cli.py)


@pytest.mark.parametrize(("array", "where"), [
    (np.array(["a", "b"]), "dtype <U1"),
    (np.zeros(5), "rank 1"),
    (np.zeros((2, 2, 2, 2)), "rank 4"),
])
def test_npy_of_the_wrong_dtype_or_rank(tmp_path, array, where):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(TableError, match=where):
        read_table(tmp_path / "x.npy")


def test_new_rows_must_have_the_runs_columns(tmp_path):
    table = read_table(write(tmp_path, "a,b,c\n1,2,3\n"))
    check_columns(table, 3, ["a", "b", "c"])
    with pytest.raises(TableError, match="has 3 columns but the model was trained on 4"):
        check_columns(table, 4)
    with pytest.raises(TableError, match="column 2 \\('b'\\) is 'b' but the model's column 2 is 'z'"):
        check_columns(table, 3, ["a", "z", "c"])


def test_csv_written_back_keeps_every_observed_cell_and_line_bit_for_bit(tmp_path):
    text = "a,\"b\",c\r\n" + "\r\n".join(ROWS) + "\r\n\r\n"
    table = read_table(write(tmp_path, text))
    filled = np.where(table.mask, -1.0, 0.25)
    out = write_table(table, filled, tmp_path / "out.csv")
    written = out.read_bytes().decode().split("\r\n")
    original = text.split("\r\n")
    assert written[0] == original[0] and len(written) == len(original)
    for old, new in zip(original[1:], written[1:], strict=True):
        if not old:  # blank lines stay blank
            assert new == old
            continue
        for cell_old, cell_new in zip(old.split(","), new.split(","), strict=True):
            assert cell_new == (cell_old if cell_old.strip().lower() not in ("", "na", "nan") else "0.25")
    again = read_table(out)
    assert again.mask.all() and np.array_equal(again.values[table.mask], table.values[table.mask])


def test_arrays_written_back_keep_dtype_shape_and_other_arrays(tmp_path):
    images = np.random.default_rng(0).random((3, 2, 2)).astype(np.float32)
    images[0, 1, 1] = np.nan
    np.savez(tmp_path / "i.npz", x=images, labels=np.arange(3))
    table = read_table(tmp_path / "i.npz", npz_key="x")
    write_table(table, np.full((3, 4), 0.5), tmp_path / "o.npz")
    with np.load(tmp_path / "o.npz") as out:
        assert out["x"].dtype == np.float32 and out["x"].shape == (3, 2, 2) and out["x"][0, 1, 1] == 0.5
        assert np.array_equal(out["labels"], np.arange(3))
        observed = ~np.isnan(images)
        assert np.array_equal(out["x"][observed], images[observed])


def test_multiple_imputations_as_m_files_or_one_long_table(tmp_path):
    table = read_table(write(tmp_path, "a,b\n1,\n,4\n"))
    draws = np.stack([np.full((2, 2), m + 0.5) for m in range(3)])
    paths = write_draws(table, draws, tmp_path / "o.csv")
    assert paths == draw_paths(tmp_path / "o.csv", 3) and paths[2].name == "o_3.csv"
    assert paths[1].read_text() == "a,b\n1,1.5\n1.5,4\n"
    [long] = write_draws(table, draws, tmp_path / "long.csv", long=True)
    assert long.read_text() == "a,b,imputation\n1,0.5,1\n0.5,4,1\n1,1.5,2\n1.5,4,2\n1,2.5,3\n2.5,4,3\n"
    with pytest.raises(TableError, match="must have the input's format"):
        write_table(table, draws[0], tmp_path / "o.tsv")
    assert not (tmp_path / "o.tsv").exists()


NUMBERED = "1,2,3\n" + "\n".join(f"{i},{i * 0.5 + 1},{(i * 7) % 5}" for i in range(12)) + "\n"


@pytest.mark.parametrize(("text", "where"), [
    (NUMBERED, "line 1 (1,2,3) holds only whole numbers: they may name the columns or be a data row; say which: "
               "--header or --no-header"),
    ("0,1\n0.5,3\n", "say which"),  # 0, 1 count the columns
    ("2019,2020\n0.5,3\n", "say which"),  # years heading rows of fractions
])
def test_a_first_line_of_numbers_that_may_name_the_columns_is_refused_until_the_user_says(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(TableError) as caught:
        read_table(path)
    assert where in str(caught.value)
    assert read_table(path, header=True).columns[0] == text.split(",")[0]
    assert read_table(path, header=False).n_rows == text.count("\n")


def test_a_first_line_of_numbers_that_cannot_name_the_columns_is_data(tmp_path):
    digits = read_table(write(tmp_path, "0,0,5\n0,3,16\n4,0,1\n"))  # repeated numbers: not names
    assert not digits.has_header and digits.n_rows == 3
    counts = read_table(write(tmp_path, "3,1,2\n5,6,7\n", "c.csv"))  # distinct but not numbering, whole rows
    assert not counts.has_header and counts.values[0].tolist() == [3, 1, 2]


@pytest.mark.parametrize(("text", "where"), [
    ("a,b\n1e300,2\n", "line 2, column 1 ('a'): 1e+300 is beyond 3.4e+38, the largest number the model computes "
                       "with (float32); rescale the column"),
    ("a,b\n1,-4e38\n", "line 2, column 2 ('b'): -4e+38 is beyond"),
    ("a,b\n1,2\n3\n", "line 3 has 1 cells"),  # ragged
    ("a,a\n1,2\n", "column 2 has the name 'a' of column 1; give every column its own name"),
    (",a,b\n0,1,2\n", "column 1 has no name in the header (line 1); name it, or remove the column if it is a row "
                      "index (pandas: to_csv(..., index=False))"),
    ("a,b,\n1,2,\n", "column 3 has no name"),  # a separator at the end of each line
    ("a;b\n1,5;2\n", "line 2, column 1 ('a'): '1,5' is not a number; the decimal point must be '.'"),
    ("a,b\n1,2\x00\n", "line 2 holds a NUL byte"),
])
def test_more_bad_text_files(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(TableError) as caught:
        read_table(path)
    assert where in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("encoded", "where"), [
    ("a,b\n1,2\n".encode("utf-16"), "the file is UTF-16 (little-endian) text; save it as UTF-8 text"),
    ("a,b\n1,2\ncaf\xe9,3\n".encode("latin-1"), "line 3: byte 0xe9 is not UTF-8 text (perhaps Latin-1"),
])
def test_text_that_is_not_utf8_says_what_it_seems_to_be(tmp_path, encoded, where):
    path = tmp_path / "e.csv"
    path.write_bytes(encoded)
    with pytest.raises(TableError) as caught:
        read_table(path)
    assert where in str(caught.value)


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_csv_separated_otherwise_is_read_with_its_separator_and_written_back_with_it(tmp_path, separator):
    path = write(tmp_path, separator.join("abc") + "\n" + "1;;3\n4;5;6\n".replace(";", separator))
    table = read_table(path)
    assert table.columns == ["a", "b", "c"] and table.delimiter == separator and table.mask[0].tolist() == [
        True, False, True]
    write_table(table, np.where(table.mask, table.values, 0.5), tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().splitlines()[1] == separator.join(["1", "0.5", "3"])


def test_a_directory_is_named_a_directory(tmp_path):
    (tmp_path / "x.csv").mkdir()
    with pytest.raises(TableError, match="x.csv: is a directory, not a file"):
        read_table(tmp_path / "x.csv")


@pytest.mark.parametrize(("save", "where"), [
    (lambda p: np.savez(p, a=np.ones((3, 2)), b=np.zeros((3, 2))),
     "holds 2 arrays (a, b), and which one is the data cannot be told; save that one alone, e.g. "
     "numpy.save('a.npy', numpy.load('x.npz')['a']), and give the .npy"),
    (lambda p: np.savez(p), "holds no arrays"),
    (lambda p: p.write_bytes(b"1,2\n"), "is not a file numpy wrote"),
])
def test_npz_files_that_do_not_name_one_array(tmp_path, save, where):
    save(tmp_path / "x.npz")
    with pytest.raises(TableError) as caught:
        read_table(tmp_path / "x.npz")
    assert where in str(caught.value) and "npz_key" not in str(caught.value)


@pytest.mark.parametrize(("array", "where"), [
    (np.zeros((0, 3)), "the array has shape (0, 3): no rows"),
    (np.array([[1.0, 1e300]]), "row 0, column 2: 1e+300 is beyond"),
    (np.array([[1, None]], dtype=object), "holds Python objects (dtype object)"),
])
def test_more_bad_arrays(tmp_path, array, where):
    np.save(tmp_path / "x.npy", array, allow_pickle=True)
    with pytest.raises(TableError) as caught:
        read_table(tmp_path / "x.npy")
    assert where in str(caught.value)


def test_check_finite_table_names_the_entry_of_an_array(tmp_path):
    check_finite_table(np.array([[1.0, np.nan], [3.4e38, -2.0]]))  # NaN is missing: fine
    for bad, shown in ((np.inf, "inf"), (-1e39, "-1e+39")):
        rows = np.array([[1.0, np.nan], [2.0, bad]])
        with pytest.raises(TableError) as caught:
            check_finite_table(rows)
        assert str(caught.value).startswith(f"X[1, 1] is {shown}: beyond 3.4e+38")


@pytest.mark.parametrize("text, line, where, cell, plain", [
    ('a,b\n1,"1,000"\n2,3\n', 2, "column 2 ('b')", "1,000", "1000"),  # a spreadsheet's thousands separator, quoted
    ('a,b\n1,1_000\n2,3\n', 2, "column 2 ('b')", "1_000", "1000"),  # Python's notation: float() reads it as 1000
    ('1,"12,345,678.5"\n2,3\n', 1, "column 2", "12,345,678.5", "12345678.5"),
    ("1,1_000\n2,3\n", 1, "column 2", "1_000", "1000"),  # not taken for a header line
    ('a;b\n1;1 000\n2;3\n', 2, "column 2 ('b')", "1 000", "1000"),
])
def test_grouped_digits_are_refused_naming_line_column_and_the_plain_number(tmp_path, text, line, where, cell, plain):
    with pytest.raises(TableError) as err:
        read_table(write(tmp_path, text))
    message = str(err.value)
    assert f"t.csv: line {line}, {where}: {cell!r} is not a number; it reads as digits grouped by a thousands " \
           f"separator" in message and f"write {plain} (export the numbers without thousands separators)" in message


def test_only_what_a_csv_calls_a_number_is_read(tmp_path):
    table = read_table(write(tmp_path, 'a,b\n"2.5",-.5e-3\n+1.,1E+02\n３,4\n'.replace("３", "3")))
    assert table.values.tolist() == [[2.5, -0.0005], [1.0, 100.0], [3.0, 4.0]]
    with pytest.raises(TableError, match=r"line 2, column 1 \('a'\): '３' is not a number"):  # float() reads it
        read_table(write(tmp_path, "a,b\n３,4\n", "w.csv"))
    with pytest.raises(TableError, match=r"'1,5' is not a number; every cell .*\(a quoted cell holding the separator"):
        read_table(write(tmp_path, 'a,b\n"1,5",2\n', "d.csv"))  # a decimal comma is no thousands group
