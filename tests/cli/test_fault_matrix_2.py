"""Issue 23's fault matrix (the second): records that name the parameters they used, hints that are true,
faults refused before they cost time. Each user error is one line on stderr with exit status 2."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

import deepem.workflows.launch as launch_module
from deepem.cli import main
from deepem.training.early_stopping import EarlyStopping

TRAIN = ["--threads", "1", "train", "--dataset", "digits", "--latent-dim", "2", "--hidden", "8", "--train-limit", "60",
         "--valid-particles", "3", "--quiet"]  # 60 points, batches of 20: 3 steps an epoch


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    return errors[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "r"
    shutil.copytree(trained, copy)
    return copy


def test_item1_records_name_the_step_of_the_best_validation(tmp_path, monkeypatch, capsys):
    """Validation bounds that fall after epoch 1: early stopping keeps epoch 1's parameters (step 3) while
    the newest checkpoint is epoch 2's (step 6); every record names step 3."""
    observe = EarlyStopping.observe
    monkeypatch.setattr(EarlyStopping, "observe",
                        lambda self, state, bound, model, method: observe(self, state, -float(state.epoch), model,
                                                                          method))
    out = tmp_path / "early"
    assert main([*TRAIN, "--epochs", "5", "--patience", "1", "--out", str(out)]) == 0
    assert "best at epoch 1" in capsys.readouterr().out
    assert (out / "checkpoints" / "ckpt-000000006.pt").is_file()  # the newest: epoch 2
    assert main(["evaluate", str(out), "--particles", "3", "--limit", "10", "--quiet"]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["step"] == 3 and record["file"] == "evaluations/iw-k3-test-n10-s0-step3.json"
    titles = []
    commands_module = sys.modules["deepem.workflows.commands"]  # (`sample` draws its grid there)
    monkeypatch.setattr(commands_module, "image_grid",
                        lambda images, shape, path, title: (titles.append(title), path.write_bytes(b"png"), path)[2])
    assert main(["sample", str(out), "--n", "4"]) == 0
    assert titles == ["iwae on digits, step 3"]


def test_item2_an_evaluation_of_other_parameters_is_kept(run, capsys):
    evaluate = ["evaluate", str(run), "--particles", "3", "--limit", "10", "--quiet"]
    assert main(evaluate) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert main(evaluate) == 0
    assert sorted(p.name for p in (run / "evaluations").iterdir() if p.suffix != ".sha256") == [
        "iw-k3-test-n10-s0-step3-per-point.npy", "iw-k3-test-n10-s0-step3.json",
        "iw-k3-test-n10-s0-step6-per-point.npy", "iw-k3-test-n10-s0-step6.json"]
    assert json.loads((run / "evaluation.json").read_text())["step"] == 6


def test_item4_an_implicit_encoder_run_ends_with_the_command_that_evaluates_it(tmp_path, capsys):
    out = tmp_path / "implicit"
    implicit = [*TRAIN, "--epochs", "1", "--encoder", "implicit", "--noise-dim", "2", "--out", str(out)]
    assert main([*implicit, "-m", "vae"]) == 2  # refused: vae needs log q; no note about validation first
    captured = capsys.readouterr()
    assert "no validation bound" not in captured.out and "needs the density log q(z|x)" in captured.err
    assert main([*implicit, "-m", "avb"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("note: no validation bound") for line in lines)
    assert lines[-1].endswith(f"evaluate with: deepem evaluate {out} --estimator ais --ais-initial prior")
    # the hinted command works, and its record holds no NaN (item 3): the KL of an implicit q is null
    assert main(["evaluate", str(out), "--estimator", "ais", "--ais-initial", "prior", "--chains", "2",
                 "--temperatures", "3", "--leapfrog-steps", "1", "--limit", "4", "--quiet"]) == 0
    text = (out / "evaluation.json").read_text()
    assert "NaN" not in text and json.loads(text)["kl_to_prior"] is None
    assert "KL(q(z|x) || p(z)): n/a (q has no density)" in capsys.readouterr().out


def test_item5_bdmc_on_binary_latents_suggests_what_exists(tmp_path, capsys):
    out = tmp_path / "sbn"
    assert main([*TRAIN, "--epochs", "1", "--latent", "bernoulli", "-m", "rws", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["bdmc", str(out), "--points", "2"]) == 2
    error = one_error(capsys)
    assert "continuous latents" in error and f"deepem evaluate {out}" in error and "--estimator" not in error


def test_item5_resume_of_a_seeds_group_names_a_seed(tmp_path, capsys):
    group = tmp_path / "group"
    for seed in (3, 4):
        (group / f"seed-{seed}").mkdir(parents=True)
        (group / f"seed-{seed}" / "config.json").write_text("{}")
    assert main(["train", "--resume", str(group)]) == 2
    assert f"give one of them, e.g. {group / 'seed-3'}" in one_error(capsys)


def _failing_launch(exitcodes: dict[int, int]):
    failures = {rank: ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=code, error_file="")
                for rank, code in exitcodes.items()}

    def elastic_launch(config, entry):
        def start(*args):
            raise ChildFailedError("deepem", failures)
        return start
    return elastic_launch


def test_item5_ctrl_c_of_a_multi_process_job_says_interrupted(monkeypatch, capsys):
    monkeypatch.setattr(launch_module, "elastic_launch", _failing_launch({0: 1, 1: 130}))
    assert launch_module.launch(main, [], 2, "evaluate") == 130
    err = capsys.readouterr().err
    assert "deepem evaluate: interrupted" in err and "rank" not in err


def test_item8_nproc_is_checked_before_any_process_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launch_module, "elastic_launch", lambda *a: pytest.fail("a process was started"))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    out = tmp_path / "never"
    assert main([*TRAIN, "--nproc", "64", "--out", str(out)]) == 2
    assert "--nproc 64 starts 64 processes on 2 cores: 64 > 2" in one_error(capsys)
    assert main([*TRAIN, "--nproc", "64", "--oversubscribe", "--out", str(out)]) == 2
    assert "each batch of 20 points over 64 processes: 20 / 64 < 1" in one_error(capsys)
    assert main([*TRAIN, "--nproc", "2", "--batch-size", "1", "--out", str(out)]) == 2
    assert "--batch-size of at least 2" in one_error(capsys)
    assert not out.exists()


def test_item8_no_resume_command_for_a_folder_never_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launch_module, "elastic_launch", _failing_launch({0: 1, 1: 1}))
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # (the core check passes on any machine)
    out = tmp_path / "never"
    assert main([*TRAIN, "--nproc", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "No run folder was written" in err and "--resume" not in err


def test_item9_out_under_a_file(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("notes")
    assert main([*TRAIN, "--out", str(tmp_path / "file.txt" / "run")]) == 2
    assert f"{tmp_path / 'file.txt'} is a file, not a folder; choose another --out" in one_error(capsys)


def test_item11_a_finished_run_leaves_no_lock(run, capsys):
    assert not (run / ".lock").exists()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert not (run / ".lock").exists()


def test_item3_nothing_missing_is_refused(tmp_path, capsys):
    for spec in ("mcar:0", "patches:0"):
        assert main([*TRAIN, "--missing", spec, "--out", str(tmp_path / "r")]) == 2
        assert f"'{spec}' removes nothing; leave out --missing" in one_error(capsys)
    assert not (tmp_path / "r").exists()


def test_item6_a_bad_option_value_is_named_against_its_type(tmp_path, capsys):
    for option, message in [("alpha_step=abc", "invalid alpha_step = 'abc': must be a number >= 0"),
                            ("alpha_step=-1", "invalid alpha_step = -1: must be a number >= 0")]:
        assert main([*TRAIN, "-m", "iwem", "--option", option, "--out", str(tmp_path / "r")]) == 2
        assert message in one_error(capsys)


def test_item7_the_help_and_list_say_what_the_mask_does(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "every method uses the mask" in text.lower() and "iwae trains the MIWAE bound" in text
    assert "each 28x28 image" not in text and "of each square image, any size" in text
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "every method uses the mask" in listed and "iwae's is the MIWAE bound" in listed


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("command", ["evaluate", "bdmc", "sample"])
def test_item10_ctrl_c_stops_a_command_with_130_and_writes_nothing(run, command, monkeypatch, capsys):
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    where = {"evaluate": ("deepem.workflows.evaluate", "evaluate_model"), "bdmc": ("deepem.workflows.commands", "bdmc"),
             "sample": ("deepem.workflows.commands", "image_grid")}[command]
    monkeypatch.setattr(sys.modules[where[0]], where[1], _interrupt)  # Ctrl-C in the middle of the work
    args = {"evaluate": ["--particles", "3"], "bdmc": ["--points", "2"], "sample": ["--n", "4"]}[command]
    assert main([command, str(run), *args]) == 130
    assert capsys.readouterr().err.strip().endswith(f"deepem {command}: interrupted")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
