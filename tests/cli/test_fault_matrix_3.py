"""The third fault matrix ("nothing silently wrong"): outputs that exist are kept unless --force, a folder
or an unwritable place is refused before any work, the outputs of one command appear together or not at
all (Ctrl-C or a full disk in the middle leaves nothing, not even temporaries), Ctrl-C after a command
finished exits with its code, hints that name the fix that works, and results that overflow are refused.
Each user error is one line on stderr, exit status 2, nothing written."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import deepem
import deepem.files as files
from deepem.cli import main

SRC = str(Path(deepem.__file__).resolve().parents[1])  # the sources under test, for the subprocesses
TABLE_TRAIN = ["--threads", "1", "train", "-m", "miwae", "--latent-dim", "2", "--hidden", "16", "--epochs", "1",
               "--batch-size", "20", "--valid-particles", "5", "--quiet"]
FAST = ["-k", "5", "--quiet"]


def write_csv(path: Path, n: int = 60, header: bool = True) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 4)) + [0, 5, -3, 10]
    lines = ["a,b,c,d"] if header else []
    for i, row in enumerate(x):
        cells = [f"{v:.4f}" for v in row]
        if i % 3 == 1:
            cells[i % 4] = ""
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    return errors[0]


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (temporaries too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fm3")
    data = write_csv(folder / "table.csv")
    assert main([*TABLE_TRAIN, "--dataset", str(data), "--out", str(folder / "run")]) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fm3img") / "r"
    assert main(["--threads", "1", "train", "--dataset", "digits", "--latent-dim", "2", "--hidden", "8",
                 "--train-limit", "60", "--valid-particles", "3", "--quiet", "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def work(table_run, tmp_path, monkeypatch) -> Path:
    """A folder with the rows to impute (new.csv), as the working directory."""
    write_csv(tmp_path / "new.csv", n=12)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- item 3: an output that exists is kept unless --force ----

@pytest.mark.parametrize(("command", "extra", "existing"), [
    ("impute", [], "out.csv"),
    ("impute", ["--draws", "3"], "out_2.csv"),  # one of the M draw files
    ("impute", ["--draws", "2", "--long"], "out_draws.csv"),
    ("score", [], "out.csv"),
    ("score", [], "out.csv.json"),  # the record beside the scores
])
def test_item3_an_existing_output_is_refused_without_force(table_run, work, command, extra, existing, capsys):
    (work / existing).write_text("mine\n")
    before = listing(work)
    assert main([command, str(table_run), "--input", "new.csv", "--output", "out.csv", *extra, *FAST]) == 2
    error = one_error(capsys)
    assert f"{existing} exists; give --force to overwrite it" in error
    assert listing(work) == before
    assert main([command, str(table_run), "--input", "new.csv", "--output", "out.csv", *extra, *FAST,
                 "--force"]) == 0
    assert (work / existing).read_text() != "mine\n"


def test_item3_sample_keeps_an_existing_table_and_grid(table_run, image_run, work, capsys):
    for run, name in ((table_run, "s.csv"), (image_run, "s.png")):
        (work / name).write_text("mine\n")
        assert main(["sample", str(run), "--output", name, "--n", "4"]) == 2
        assert f"{name} exists; give --force to overwrite it" in one_error(capsys)
        assert (work / name).read_text() == "mine\n"
        assert main(["sample", str(run), "--output", name, "--n", "4", "--force"]) == 0
        assert (work / name).read_bytes() != b"mine\n"


def test_item4_negative_draws_are_refused_by_the_declared_range(table_run, work, capsys):
    with pytest.raises(SystemExit) as stop:  # (argparse ends the parse itself)
        main(["impute", str(table_run), "--input", "new.csv", "--output", "out.csv", "--draws", "-1"])
    assert stop.value.code == 2 and "--draws: invalid draws = '-1': must be an integer >= 0" in one_error(capsys)
    assert not (work / "out.csv").exists()


@pytest.mark.parametrize("command, flag, most", [("impute", "--draws", 1000), ("sample", "--n", 1000000)])
def test_draws_and_samples_beyond_the_declared_range_are_refused(table_run, work, command, flag, most, capsys):
    """All of them would be held in memory at once: an extra 0 or three is refused, not allocated."""
    extra = ["--input", "new.csv", "--output", "out.csv"] if command == "impute" else ["--output", "out.csv"]
    with pytest.raises(SystemExit) as stop:
        main([command, str(table_run), *extra, flag, str(most + 1)])
    name = flag.removeprefix("--")
    assert stop.value.code == 2 and (f"{flag}: invalid {name} = '{most + 1}': must be an integer >= "
                                     f"{0 if command == 'impute' else 1} and <= {most}") in one_error(capsys)
    assert not (work / "out.csv").exists()


# ---- item 6: an output that is a folder, or under a file ----

@pytest.mark.parametrize("command", ["impute", "score", "sample"])
def test_item6_an_output_that_is_a_folder_is_one_line(table_run, work, command, capsys):
    (work / "out.csv").mkdir()
    args = ["--input", "new.csv", *FAST] if command != "sample" else []
    assert main([command, str(table_run), *args, "--output", "out.csv"]) == 2
    assert "out.csv is a folder; give the path of a file" in one_error(capsys)
    assert list((work / "out.csv").iterdir()) == []


def test_item6_an_output_under_a_file_is_one_line(table_run, work, capsys):
    assert main(["impute", str(table_run), "--input", "new.csv", "--output", "new.csv/out.csv", *FAST]) == 2
    assert "new.csv is not a folder" in one_error(capsys)


def test_sample_of_an_image_model_to_a_csv_is_one_line(image_run, work, capsys):
    assert main(["sample", str(image_run), "--output", "grid.csv"]) == 2
    assert "give a .png --output" in one_error(capsys) and not (work / "grid.csv").exists()


def test_a_draw_file_that_would_be_the_input_is_refused(table_run, work, capsys):
    (work / "x_1.csv").write_text((work / "new.csv").read_text())
    before = listing(work)
    assert main(["impute", str(table_run), "--input", "x_1.csv", "--output", "x.csv", "--draws", "1", *FAST,
                 "--force"]) == 2
    assert "would overwrite the input" in one_error(capsys) and listing(work) == before


def test_long_without_draws_is_one_line(table_run, work, capsys):
    assert main(["impute", str(table_run), "--input", "new.csv", "--output", "out.csv", "--long", *FAST]) == 2
    assert "give --draws M with it" in one_error(capsys) and not (work / "out.csv").exists()


# ---- item 8: the outputs of one command appear together or not at all ----

def _interrupt_on(call: int, exc: BaseException, monkeypatch, name: str = "_place") -> None:
    """Make the `call`-th call of files.NAME raise `exc` (Ctrl-C or a full disk in the middle of a set)."""
    original = getattr(files, name)
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise exc
        return original(*args, **kwargs)
    monkeypatch.setattr(files, name, wrapped)


@pytest.mark.parametrize(("command", "extra"), [("impute", ["--draws", "3"]), ("score", [])])
def test_item8_ctrl_c_as_the_first_file_lands_leaves_nothing(table_run, work, command, extra, monkeypatch, capsys):
    before = listing(work)
    _interrupt_on(2, KeyboardInterrupt(), monkeypatch)  # the first file is in place, the second not yet
    assert main([command, str(table_run), "--input", "new.csv", "--output", "out.csv", *extra, *FAST]) == 130
    assert capsys.readouterr().err.strip().endswith(f"deepem {command}: interrupted")
    assert listing(work) == before  # no out.csv, no out_1.csv, no temporary


def test_item8_with_force_an_interrupted_set_puts_the_old_files_back(table_run, work, monkeypatch, capsys):
    for name in ("out.csv", "out_1.csv", "out_2.csv"):
        (work / name).write_text(f"old {name}\n")
    before = listing(work)
    _interrupt_on(3, KeyboardInterrupt(), monkeypatch)
    assert main(["impute", str(table_run), "--input", "new.csv", "--output", "out.csv", "--draws", "2", *FAST,
                 "--force"]) == 130
    assert listing(work) == before


def test_item8_a_full_disk_in_the_middle_is_one_line_and_leaves_nothing(table_run, work, monkeypatch, capsys):
    before = listing(work)
    _interrupt_on(3, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), monkeypatch, "_temporary_copy")
    assert main(["impute", str(table_run), "--input", "new.csv", "--output", "out.csv", "--draws", "3", *FAST]) == 2
    assert "No space left on device; nothing was written" in one_error(capsys)
    assert listing(work) == before


def test_item8_another_command_writing_the_same_file_meanwhile_is_not_overwritten(tmp_path):
    """The check before the work passed; the file appears while this command computes: it is kept."""
    target = tmp_path / "out.csv"
    original = files.check_outputs
    try:
        files.check_outputs = lambda paths, force=False, flag="--force": None  # (the race: checked before)
        target.write_text("theirs\n")
        with pytest.raises(files.OutputError, match="written meanwhile by something else"):
            files.write_file_set({tmp_path / "a.csv": b"a\n", target: b"mine\n"})
    finally:
        files.check_outputs = original
    assert target.read_text() == "theirs\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_item8_sigint_while_the_set_is_renamed_leaves_nothing(table_run, work):
    """A real SIGINT, sent while the first file is in place and the second not yet."""
    code = f"""
import sys, time
import deepem
import deepem.files as files
from deepem.cli import main
original, calls = files._place, []
def slow(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        print("placing", flush=True)
        time.sleep(30)
    return original(*args, **kwargs)
files._place = slow
sys.exit(main(["--threads", "1", "impute", {str(table_run)!r}, "--input", "new.csv", "--output", "out.csv",
               "--draws", "3", "-k", "5", "--quiet"]))
"""
    before = listing(work)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "placing"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip() == "deepem impute: interrupted", err
    assert listing(work) == before


# ---- item 9: Ctrl-C just after the command finished ----

def test_item9_ctrl_c_during_the_interpreters_teardown_exits_cleanly(table_run, work):
    """SIGINT sent as soon as the command has printed its result (in the exit handlers or the teardown of
    torch's modules): exit status 0 (everything is written), no traceback, and the outputs are whole."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    for delay in (0.0, 0.05, 0.3):
        for name in ("s.csv", "s.csv.json"):
            (work / name).unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "deepem", "--threads", "1", "score", str(table_run), "--input",
                                 "new.csv", "--output", "s.csv", *FAST], cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert "written to" in proc.stdout.readline()
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "Traceback" not in err and "KeyboardInterrupt" not in err, (delay, err)
        assert len((work / "s.csv").read_text().splitlines()) == 13 and (work / "s.csv.json").is_file()


# ---- item 12: resume after the training file was deleted ----

def test_item12_resume_without_the_training_file_names_the_file_and_its_sha256(tmp_path, capsys):
    data = write_csv(tmp_path / "gone.csv")
    run = tmp_path / "run"
    assert main([*TABLE_TRAIN, "--dataset", str(data), "--out", str(run)]) == 0
    sha256 = files.sha256_file(data)
    data.unlink()
    capsys.readouterr()
    assert main(["--threads", "1", "train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2
    error = one_error(capsys)
    assert str(data) in error and sha256 in error and "cannot change its dataset" in error
    assert "--dataset" not in error.replace("deepem train --dataset FILE", "")  # no flag resume would refuse


# ---- item 14: a header-less file for a run trained with a header ----

@pytest.mark.parametrize("first_row_missing", [False, True])
def test_item14_a_file_without_its_header_is_told_no_header(table_run, work, first_row_missing, capsys):
    rows = write_csv(work / "bare.csv", n=12, header=False).read_text().splitlines()
    if first_row_missing:
        rows[0] = "," + rows[0].split(",", 1)[1]
    (work / "bare.csv").write_text("\n".join(rows) + "\n")
    for command in ("impute", "score"):
        assert main([command, str(table_run), "--input", "bare.csv", "--output", "out.csv", *FAST]) == 2
        error = one_error(capsys)
        assert "--no-header" in error and "give the training file's columns" not in error
    assert main(["impute", str(table_run), "--input", "bare.csv", "--output", "out.csv", "--no-header", *FAST]) == 0


# ---- the data layer's refusals, end to end through the command line ----

def test_a_numeric_header_line_is_refused_until_said(tmp_path, capsys):
    (tmp_path / "n.csv").write_text("1,2,3\n0.5,1.5,2.5\n1.5,2.25,3.5\n2.5,0.5,1.5\n")
    assert main([*TABLE_TRAIN, "--dataset", str(tmp_path / "n.csv"), "--out", str(tmp_path / "r")]) == 2
    assert "--header or --no-header" in one_error(capsys) and not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["train", "impute", "score", "evaluate"])
def test_a_1e300_cell_is_refused_and_nothing_written(table_run, work, command, capsys):
    rows = (work / "new.csv").read_text().splitlines()
    rows[2] = "1e300," + rows[2].split(",", 1)[1]
    (work / "big.csv").write_text("\n".join(rows) + "\n")
    before, run_before = listing(work), listing(table_run)
    args = {"train": [*TABLE_TRAIN, "--dataset", "big.csv", "--out", "r"],
            "evaluate": ["evaluate", str(table_run), "--input", "big.csv", "--particles", "5", "--quiet"]}.get(
        command, [command, str(table_run), "--input", "big.csv", "--output", "out.csv", *FAST])
    assert main(args) == 2
    assert "1e+300 is beyond" in one_error(capsys)
    assert listing(work) == before and listing(table_run) == run_before


@pytest.mark.parametrize("command", ["impute", "score", "evaluate"])
def test_a_value_far_outside_the_training_data_is_refused_not_written_as_inf(table_run, work, command, capsys):
    """1e30 is a float32, in a Gaussian's support, yet its square overflows: no inf or nan is written."""
    (work / "far.csv").write_text("a,b,c,d\n1e30,,-3,10\n0.1,5,-3,10\n")
    before, run_before = listing(work), listing(table_run)
    args = ["evaluate", str(table_run), "--input", "far.csv", "--particles", "5", "--quiet"] if command == "evaluate" \
        else [command, str(table_run), "--input", "far.csv", "--output", "out.csv", *FAST]
    assert main(args) == 2
    assert "far.csv: " in (error := one_error(capsys)) and "line 2 is not finite" in error
    assert listing(work) == before and listing(table_run) == run_before


def test_a_bernoulli_run_refuses_grey_levels(image_run, work, capsys):
    np.save(work / "grey.npy", np.random.default_rng(0).integers(0, 17, (5, 64)).astype(float))
    for command in ("score", "impute"):
        suffix = ".npy" if command == "impute" else ".csv"
        assert main([command, str(image_run), "--input", "grey.npy", "--output", f"out{suffix}", *FAST]) == 2
        assert "bernoulli likelihood gives (0 or 1)" in one_error(capsys)
    assert sorted(p.name for p in work.iterdir()) == ["grey.npy", "new.csv"]


def test_a_semicolon_separated_csv_is_read_with_its_separator(table_run, work, capsys):
    (work / "semi.csv").write_text((work / "new.csv").read_text().replace(",", ";"))
    assert main(["impute", str(table_run), "--input", "semi.csv", "--output", "out.csv", *FAST]) == 0
    lines = (work / "out.csv").read_text().splitlines()
    assert lines[0] == "a;b;c;d" and all(len(line.split(";")) == 4 and "" not in line.split(";") for line in lines)


@pytest.mark.parametrize("command", ["impute", "score", "evaluate"])
def test_a_folder_named_like_a_file_and_an_npz_of_two_arrays_are_one_line(table_run, work, command, capsys):
    (work / "x.csv").mkdir()
    np.savez(work / "two.npz", a=np.zeros((3, 4)), b=np.ones((3, 4)))
    for given, expected in (("x.csv", "is a directory, not a file"), ("two.npz", "holds 2 arrays (a, b)")):
        output = "out.npz" if given.endswith(".npz") and command == "impute" else "out.csv"
        args = ["--particles", "5", "--quiet"] if command == "evaluate" else ["--output", output, *FAST]
        assert main([command, str(table_run), "--input", given, *args]) == 2
        assert expected in one_error(capsys)
    assert not (work / "out.csv").exists() and not (work / "out.npz").exists()


# ---- more bad inputs ----

def test_a_folder_that_cannot_be_written_is_refused_before_any_work(table_run, work, monkeypatch, capsys):
    (work / "locked").mkdir()
    original = os.access
    monkeypatch.setattr(files.os, "access", lambda path, mode: Path(path).name != "locked" and original(path, mode))
    assert main(["score", str(table_run), "--input", "new.csv", "--output", "locked/s.csv", *FAST]) == 2
    assert "the folder locked cannot be written" in one_error(capsys) and list((work / "locked").iterdir()) == []


def test_a_write_refused_by_the_system_is_one_line_and_leaves_nothing(table_run, work, monkeypatch, capsys):
    """A read-only file system or a permission the check could not see: the write fails, nothing stays."""
    before = listing(work)
    _interrupt_on(2, PermissionError(errno.EROFS, os.strerror(errno.EROFS)), monkeypatch, "_temporary_copy")
    assert main(["score", str(table_run), "--input", "new.csv", "--output", "s.csv", *FAST]) == 2
    assert "Read-only file system; nothing was written" in one_error(capsys) and listing(work) == before


def test_ctrl_c_while_the_command_line_is_read_is_one_line(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("deepem.cli.build_parser", interrupted)
    try:
        code = main(["list"])
    except KeyboardInterrupt:  # (would end the test session)
        pytest.fail("Ctrl-C while parsing escaped main with a traceback")
    assert code == 130
    assert capsys.readouterr().err.strip() == "deepem: interrupted"


def test_a_damaged_newest_checkpoint_is_said_and_the_step_used_named(table_run, work, capsys):
    run = work / "damaged"
    shutil.copytree(table_run, run)
    newest = max((run / "checkpoints").glob("ckpt-*.pt"))
    newest.write_bytes(newest.read_bytes()[:100])
    assert main(["score", str(run), "--input", "new.csv", "--output", "s.csv", *FAST]) == 0
    captured = capsys.readouterr()
    assert f"skipping unusable checkpoint: {newest}" in captured.err and "parameters of step 0" in captured.out


def test_force_and_header_without_input_are_one_line(table_run, capsys):
    assert main(["impute", str(table_run), "--force"]) == 2
    assert "--force is for --input FILE --output FILE" in one_error(capsys)


def test_a_link_to_nothing_as_output_is_an_existing_path(tmp_path):
    (tmp_path / "out.csv").symlink_to(tmp_path / "nowhere.csv")
    with pytest.raises(files.OutputError, match="out.csv exists; give --force"):
        files.check_outputs([tmp_path / "out.csv"])


# ---- messages that named the wrong fix ----

def test_a_table_given_as_the_run_says_what_a_model_source_is(work, capsys):
    assert main(["score", "new.csv", "--input", "new.csv", "--output", "s.csv"]) == 2
    message = one_error(capsys)
    assert "new.csv is not a deepem model file: give a run folder" in message and "pop from" not in message


def test_damaged_checkpoints_are_not_called_missing(table_run, work, capsys):
    run = work / "damaged"
    shutil.copytree(table_run, run)
    for ckpt in (run / "checkpoints").glob("*.pt"):
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert main(["score", str(run), "--input", "new.csv", "--output", "s.csv"]) == 2
    message = one_error(capsys)
    assert "checkpoints can be read (damaged or truncated" in message and "train it first" not in message
    assert not (work / "s.csv").exists()


def test_a_missing_dataset_record_is_named(table_run, work, capsys):
    run = work / "norecord"
    shutil.copytree(table_run, run)
    (run / "data_file.json").unlink()
    assert main(["impute", str(run), "--input", "new.csv", "--output", "f.csv"]) == 2
    message = one_error(capsys)
    assert "data_file.json) is missing" in message and "not a number" not in message


def test_training_on_a_folder_named_like_a_table_says_it_is_a_folder(work, capsys):
    (work / "x.csv").mkdir()
    assert main(["train", "--dataset", "x.csv", "--out", "r"]) == 2
    assert "is a directory, not a file" in one_error(capsys)
