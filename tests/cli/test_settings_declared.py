"""Each setting is declared once (training/config.py, deepem/settings.py): the flags, their help, `deepem
list` and config.json all say what the declaration says; typed settings win over a method's paper
defaults; config.json files of older versions still resume; and only user errors are one line."""

import argparse
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import deepem
import deepem.declarations.flags as flags
from deepem.cli import build_parser, main
from deepem.files import atomic_write_json
from deepem.methods.registry import METHODS, method_options
from deepem.models.config import ModelConfig
from deepem.settings import SettingError, convert, declared
from deepem.training.checkpoint_file import list_checkpoints, load_checkpoint
from deepem.training.config import TrainConfig

TINY = ["--dataset", "digits", "--latent-dim", "2", "--hidden", "8", "--batch-size", "20", "--quiet",
        "--train-limit", "40", "--valid-every", "0"]
SRC = Path(deepem.__file__).parent


def _train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_every_flag_comes_from_its_declaration_with_its_default_in_the_help():
    actions = {a.dest: a for a in _train_parser()._actions}
    settings = {**declared(TrainConfig), **declared(ModelConfig)}
    flagged = [s for s in settings.values() if s.flag]
    assert len(flagged) >= 30
    cli_source = inspect.getsource(flags.add_run_arguments) + (SRC / "workflows" / "commands.py").read_text()
    for s in flagged:
        action = actions[s.name]
        assert action.default is None  # not typed: the declaration's default applies
        shown = s.shown or ("off" if s.default is False else
                            ",".join(map(str, s.default)) if isinstance(s.default, list) else
                            "none" if s.default is None else f"{s.default:g}" if isinstance(s.default, float)
                            else str(s.default))
        assert action.help.endswith(f"(default: {shown})"), s.name
        # the flag is not written by hand anywhere: its one declaration makes it
        assert f'"{s.option}"' not in cli_source, s.option
    # the declared defaults are the ones a run gets
    config = TrainConfig()
    for name, s in declared(TrainConfig).items():
        assert getattr(config, name) == s.default


def test_config_json_and_list_agree_with_the_declarations(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", *TINY]) == 0
    saved = json.loads((run / "config.json").read_text())
    typed = {"dataset", "batch_size", "train_limit", "valid_every", "epochs", "data_dir", "optim", "optim_sources",
             "method_options", "model"}
    for name, s in declared(TrainConfig).items():
        if name not in typed:
            assert saved[name] == s.default, name
    assert saved["method_options"] == {"particles": method_options("iwae")["particles"]}
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in METHODS:
        assert ", ".join(f"{k}={v!r}" for k, v in method_options(name).items()) in out


def test_values_are_checked_against_the_declared_type_and_range():
    s = declared(TrainConfig)
    assert convert(s["epochs"], "12", parse_text=True) == 12
    assert convert(declared(ModelConfig)["hidden"], "200,100", parse_text=True) == [200, 100]
    with pytest.raises(SettingError, match="invalid epochs = 'many': must be an integer >= 1"):
        convert(s["epochs"], "many", parse_text=True)
    with pytest.raises(SettingError, match="invalid lr = '0.1': must be a positive finite number or None"):
        convert(s["lr"], "0.1")  # a Python value is not read as text
    with pytest.raises(SettingError, match=r"invalid epochs = 0: must be an integer >= 1"):
        convert(s["epochs"], 0)
    with pytest.raises(SettingError, match="invalid nan_policy = 'never': must be one of stop, skip, rollback"):
        convert(s["nan_policy"], "never")


def test_typed_lr_wins_over_avb_paper_rates_and_says_so(tmp_path, capsys):
    run = tmp_path / "avb"
    assert main(["train", "-m", "avb", "--encoder", "implicit", "--lr", "0.01", "--out", str(run), "--epochs", "1",
                 *TINY]) == 0
    printed = capsys.readouterr().out
    assert "theta lr 0.01 (typed)" in printed and "phi lr 0.01 (typed)" in printed
    assert "discriminator lr 0.0001 (method default)" in printed
    saved = json.loads((run / "config.json").read_text())
    assert {g: spec["lr"] for g, spec in saved["optim"].items()} == {"theta": 0.01, "phi": 0.01,
                                                                      "discriminator": 1e-4}
    assert saved["optim_sources"]["theta"]["lr"] == "typed" and saved["optim_sources"]["phi"]["lr"] == "typed"
    assert saved["optim_sources"]["discriminator"]["lr"] == "method default"
    assert saved["optim_sources"]["theta"]["betas"] == "global default"
    # the optimisers really ran at those rates
    ckpt = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    rates = {g: state["param_groups"][0]["lr"] for g, state in ckpt["optimizers"].items()}
    assert rates == {"theta": 0.01, "phi": 0.01, "discriminator": 1e-4}
    # untyped: the paper's rates, and --optim sets a group's own
    other = tmp_path / "avb-default"
    assert main(["train", "-m", "avb", "--encoder", "implicit", "--optim", "discriminator:lr=0.002", "--out",
                 str(other), "--epochs", "1", *TINY]) == 0
    saved = json.loads((other / "config.json").read_text())
    assert {g: spec["lr"] for g, spec in saved["optim"].items()} == {"theta": 5e-5, "phi": 5e-5,
                                                                      "discriminator": 0.002}


def _old_format(run: Path) -> None:
    """Rewrite a run's config.json as deepem wrote it before K became a method option."""
    config = json.loads((run / "config.json").read_text())
    options = dict(config["method_options"])
    config["particles"] = options.pop("particles")
    config["method_options"] = options
    config["lr"] = 1e-3  # always recorded then
    config["optim"] = {}  # only the method's paper settings were recorded (iwae has none)
    del config["optim_sources"]
    atomic_write_json(run / "config.json", config, checksum=True)


def test_an_old_config_json_resumes_to_the_same_numbers(tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = ["-k", "3", "--epochs", "2", *TINY]
    assert main(["train", "--out", str(straight), *args]) == 0
    assert main(["train", "--out", str(resumed), *args[:2], "--epochs", "1", *TINY]) == 0
    _old_format(resumed)
    assert "particles" in json.loads((resumed / "config.json").read_text())
    assert main(["train", "--resume", str(resumed), "--epochs", "2", "--quiet"]) == 0
    migrated = json.loads((resumed / "config.json").read_text())
    assert "particles" not in migrated and migrated["method_options"] == {"particles": 3}
    a, b = (load_checkpoint(list_checkpoints(r / "checkpoints")[-1])["model"] for r in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    _old_format(resumed)  # evaluate reads the old form too
    lines = []
    for run in (resumed, straight):
        assert main(["evaluate", str(run), "-k", "5", "--limit", "10", "--quiet"]) == 0
        lines.append(capsys.readouterr().out.splitlines()[0])
    assert lines[0].startswith("test log-likelihood (IWAE bound, K=5, 10 points)") and lines[0] == lines[1]


def test_an_internal_bug_keeps_its_traceback(monkeypatch):
    import deepem.workflows.commands as commands

    def broken(args):
        raise KeyError("a library bug")

    monkeypatch.setattr(commands, "list_all", broken)
    with pytest.raises(KeyError, match="a library bug"):
        main(["list"])
    planted = ("import sys, deepem.workflows.commands as c\n"
               "def broken(args):\n    raise ValueError('planted internal bug')\n"
               "c.list_all = broken\n"
               "from deepem.cli import main\nsys.exit(main(['list']))\n")
    proc = subprocess.run([sys.executable, "-c", planted], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ValueError: planted internal bug" in proc.stderr
