"""Every flag of every `deepem` subcommand comes from one declaration (deepem/declarations): no flag is
written by hand, a flag several subcommands share is declared once, each flag's help states its default,
one validator refuses a bad value in one line naming the setting (exit 2), and `deepem train --method M
--help` lists M's options."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import deepem
from deepem.cli import build_parser, main
from deepem.declarations import commands, flags
from deepem.declarations.estimators import ESTIMATOR_SETTINGS
from deepem.declarations.methods import METHOD_OPTIONS
from deepem.declarations.model import ModelSettings
from deepem.declarations.run import PARTICLES, RunSettings
from deepem.settings import Setting, declared

SRC = Path(deepem.__file__).parent


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _declarations(command: commands.Command) -> list[Setting]:
    """Every declaration a subcommand's flags may come from."""
    out = [*commands.command_flags(command), commands.THREADS]
    if command.run:
        out += [*declared(ModelSettings).values(), *declared(RunSettings).values(), PARTICLES, flags.OPTION,
                flags.ARCHITECTURE_OPTION, flags.OPTIM, commands.QUIET]
    for record in commands.command_estimators(command):
        out += declared(record).values()
    return out


def test_no_flag_is_made_outside_the_settings_machinery():
    """add_argument appears in one place: deepem.settings.add_setting, which makes a flag from a Setting."""
    makers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if ".add_argument(" in p.read_text())
    assert makers == ["settings/command_line.py"]
    assert (SRC / "settings" / "command_line.py").read_text().count(".add_argument(") == 1


@pytest.mark.parametrize("command", commands.COMMANDS, ids=lambda c: c.name)
def test_every_flag_of_every_subcommand_comes_from_a_declaration(command):
    parser = _subparsers()[command.name]
    by_option = {}
    for s in _declarations(command):
        by_option.setdefault(s.attribute if s.positional else s.option, []).append(s)
    seen = set()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        key = action.dest if not action.option_strings else action.option_strings[0]
        assert key in by_option, f"{command.name} {key}: no declaration"
        s = next(s for s in by_option[key] if s.attribute == action.dest)
        seen.add(key)
        if s.positional:
            continue
        # its default is in its help, and a subcommand's own flag defaults to its declared default
        assert re.search(r"\((default: .+|required; no default)\)$", action.help), (command.name, key, action.help)
        if s in commands.command_flags(command):
            assert action.default == s.default
        if s.choices is not None:
            assert tuple(action.choices) == s.choices
    assert {s.attribute if s.positional else s.option for s in commands.command_flags(command)} <= seen


def test_the_dests_the_command_bodies_read_are_kept():
    parsers = _subparsers()
    dests = {name: {a.dest for a in p._actions} for name, p in parsers.items()}
    assert {"run_dir", "estimator", "split", "input", "limit", "seed", "batch_size", "observed", "data_dir", "device",
            "quiet", "nproc", "oversubscribe", "particles", "chains", "proposal"} <= dests["evaluate"]
    assert {"run_dir", "input", "output", "split", "particles", "draws", "long", "proposal", "header", "baselines",
            "limit", "seed", "data_dir", "quiet"} <= dests["impute"]
    assert {"run_dir", "input", "output", "particles", "proposal", "header", "seed", "quiet"} <= dests["score"]
    assert {"run_dir", "n", "seed", "output"} <= dests["sample"]
    assert {"run_dir", "points", "seed", "batch_size", "data_dir", "device", "quiet", "nproc", "temperatures"} \
        <= dests["bdmc"]
    assert {"methods", "out", "force", "eval_particles", "eval_limit", "seeds", "options", "optim", "quiet"} \
        <= dests["compare"]
    assert {"out", "force", "resume", "seeds", "method", "options", "architecture_options", "optim", "quiet",
            "particles", "nproc"} <= dests["train"]
    args = build_parser().parse_args(["evaluate", "run", "--input", "rows.csv"])
    assert args.input == "rows.csv" and args.seed == 0 and args.batch_size == 100 and args.quiet is False
    args = build_parser().parse_args(["impute", "run"])
    assert (args.particles, args.draws, args.baselines, args.split, args.header) == (1000, 0, "iterative", "train",
                                                                                      None)


def test_a_shared_flag_is_declared_once():
    shared = commands.shared_settings()
    assert shared["--seed"] == ["evaluate", "impute", "score", "sample", "bdmc"]
    assert shared["--quiet"] == ["evaluate", "impute", "score", "bdmc"]  # train and compare: with the run flags
    assert {"--device", "--data-dir", "--batch-size", "--force", "--proposal", "--header", "--oversubscribe"} \
        <= set(shared)
    text = (SRC / "declarations" / "commands.py").read_text()
    for name in ("seed", "device", "quiet", "force", "data_dir", "batch_size"):
        assert text.count(f'Setting("{name}"') == 1, name


# a bad value of one flag of each subcommand: out of range, and not among the choices
BAD = [
    (["train", "--epochs", "0"], "invalid epochs = '0': must be an integer >= 1"),
    (["train", "--nan-policy", "never"], "invalid nan_policy = 'never': must be one of stop, skip, rollback"),
    (["evaluate", "r", "--seed", "-1"], "invalid seed = '-1': must be an integer >= 0"),
    (["evaluate", "r", "--split", "all"], "invalid split = 'all': must be one of train, valid, test"),
    (["evaluate", "r", "--batch-size", "0"], "invalid batch_size = '0': must be an integer >= 1"),
    (["compare", "--methods", "vae", "--eval-particles", "0"], "invalid eval_particles = '0': must be an integer"),
    (["compare", "--methods", "vae", "--schedule", "cosine"], "invalid schedule = 'cosine': must be one of"),
    (["impute", "r", "--draws", "-2"], "invalid draws = '-2': must be an integer >= 0"),
    (["impute", "r", "--baselines", "knn"], "invalid baselines = 'knn': must be one of none, mean, iterative"),
    (["score", "r", "--input", "a", "--output", "b", "-k", "0"], "invalid particles = '0': must be an integer >= 1"),
    (["score", "r", "--input", "a", "--output", "b", "--proposal", "mean"], "invalid proposal = 'mean': must be"),
    (["sample", "r", "--n", "0"], "invalid n = '0': must be an integer >= 1"),
    (["sample", "r", "--seed", "x"], "invalid seed = 'x': must be an integer >= 0"),
    (["bdmc", "r", "--points", "0"], "invalid points = '0': must be an integer >= 1"),
    (["bdmc", "r", "--schedule", "cosine"], "invalid schedule = 'cosine': must be one of linear, sigmoid"),
    (["list", "--threads", "0"], "invalid threads = '0': must be an integer >= 1"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_one_validator_refuses_a_bad_value_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert err.startswith(f"deepem {argv[0]}: error: argument ")


def test_every_subcommand_is_covered_by_the_bad_values():
    assert {argv[0] for argv, _ in BAD} == {c.name for c in commands.COMMANDS}


@pytest.mark.parametrize("argv", [["train", "--method", "rem-v1", "--help"], ["train", "--help", "-m", "rem-v1"],
                                  ["train", "--method=rem-v1", "-h"]])
def test_train_method_help_lists_the_method_s_options(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "options of method rem-v1" in text
    for name, s in METHOD_OPTIONS["rem-v1"].items():
        assert f"{name}={s.default!r}: {' '.join(s.help.split())}" in text, name
    assert "particles=50:" in text and "(an integer >= 2)" in text  # REM needs two particles for a covariance
    assert "(one of weighted, unweighted)" in text and "jitter=1e-06:" in text and "(a number >= 0)" in text


def test_train_help_without_a_method_says_how_to_see_one(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "deepem train --method M --help: this help with M's options" in " ".join(capsys.readouterr().out.split())


def test_the_estimators_flags_are_their_records():
    parser = _subparsers()["evaluate"]
    options = {a.option_strings[0] for a in parser._actions if a.option_strings}
    for record in ESTIMATOR_SETTINGS.values():
        assert {s.option for s in declared(record).values()} <= options
