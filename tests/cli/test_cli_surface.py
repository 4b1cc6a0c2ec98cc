"""What a new user sees of the command line before training anything (issue 9): --help, `deepem list`,
--threads on either side of the subcommand, and a pipe closed early."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from deepem.cli import build_parser, main
from deepem.data import DATASETS


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_description_names_every_subcommand():
    parser = build_parser()
    for name in _subparsers(parser):
        assert f"{name} (" in parser.description, name


@pytest.mark.parametrize("command", [None, "train", "evaluate", "compare", "impute", "score", "sample", "bdmc", "list"])
def test_help_shows_the_default_of_every_option(command):
    parser = build_parser()
    p = parser if command is None else _subparsers(parser)[command]
    text = p.format_help()
    for action in p._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        assert action.help and "default" in action.help.lower(), f"{command} {action.option_strings}"
    if command == "train":
        assert "(default: 200,200)" in text and "(default: 50;" in text and "(default: off)" in text


@pytest.mark.parametrize(("argv", "threads"), [
    (["train"], None), (["--threads", "3", "train"], 3), (["train", "--threads", "1"], 1),
    (["--threads", "3", "evaluate", "run", "--threads", "2"], 2), (["list", "--threads", "4"], 4)])
def test_threads_before_or_after_the_subcommand(argv, threads):
    assert build_parser().parse_args(argv).threads == threads


def test_list_describes_every_dataset(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, info in DATASETS.items():
        line = next(line for line in out.splitlines() if line.split() and line.split()[0] == name)
        assert info.summary() in line


def test_closed_pipe_ends_quietly():
    """`deepem list | head -1`: the reader is gone before deepem writes; no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "deepem.cli", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # closed before the interpreter has even imported torch: every write fails
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err
