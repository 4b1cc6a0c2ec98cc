"""Settings the command line must get right: K defaults to the method's own, a resumed run changes
exactly what was typed, and `compare` builds its runs like `train` (a re-run keeps finished runs)."""

import json

import pytest

import deepem.workflows.train as training
from deepem.cli import main
from deepem.training.config import ConfigError, TrainConfig
from deepem.workflows.assembly import resolve

TINY = ["--dataset", "digits", "--latent-dim", "2", "--hidden", "8", "--batch-size", "50", "--quiet",
        "--valid-particles", "5", "--train-limit", "100"]


def test_particles_default_to_the_method_default():
    assert resolve(TrainConfig(method="rem-v1")).particles == 50
    assert resolve(TrainConfig(method="iwae")).method_options == {"particles": 5}
    assert resolve(TrainConfig(method="rem-v1", method_options={"particles": 7})).particles == 7
    with pytest.raises(ConfigError, match="invalid particles = 'many': must be an integer >= 1"):
        resolve(TrainConfig(method="rem-v1", method_options={"particles": "many"}))


def test_train_names_the_run_by_the_resolved_k(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "-m", "rem-v1", "--epochs", "1", "--valid-every", "0", *TINY]) == 0
    config = json.loads((tmp_path / "runs" / "digits-rem-v1-k50-s0" / "config.json").read_text())
    assert config["method_options"] == {"particles": 50} and "particles" not in config
    # K is set one way: --particles (-k); --option particles= is refused, naming the flag to use
    with pytest.raises(SystemExit) as exit_:
        main(["train", "-m", "rem-v1", "--option", "particles=4", *TINY])
    assert exit_.value.code == 2 and "K is set with --particles (or -k)" in capsys.readouterr().err


def test_a_method_option_of_the_wrong_type_names_the_option(capsys):
    assert main(["train", "-m", "iwem", "--option", "alpha_step=abc", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("invalid alpha_step = 'abc': must be a number >= 0") and len(err.splitlines()) == 1


@pytest.fixture
def skip_run(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", "--nan-policy", "skip", "--valid-every", "0",
                 *TINY]) == 0
    return run


def test_resume_applies_exactly_what_was_typed_even_a_default(skip_run, monkeypatch):
    seen = []
    monkeypatch.setattr(training, "run_training", lambda config, out, **kw: seen.append(kw["overrides"]) or 0)
    assert main(["train", "--resume", str(skip_run), "--nan-policy", "stop"]) == 0  # stop is the default
    assert main(["train", "--resume", str(skip_run), "--epochs", "3", "--quiet"]) == 0
    assert main(["train", "--resume", str(skip_run)]) == 0
    assert seen == [{"nan_policy": "stop"}, {"epochs": 3}, {}]


def test_resume_refuses_typed_settings_it_cannot_change(skip_run, capsys):
    assert main(["train", "--resume", str(skip_run), "--lr", "0.001"]) == 2  # 0.001 is the default
    assert "cannot change lr when resuming" in capsys.readouterr().err
    assert main(["train", "--resume", str(skip_run), "--hidden", "8"]) == 2
    assert "cannot change model.hidden when resuming" in capsys.readouterr().err
    assert main(["train", "--resume", str(skip_run), "-k", "3"]) == 2
    assert "cannot change particles when resuming" in capsys.readouterr().err


def test_resumed_override_reaches_the_trainer(skip_run):
    logs = []
    from_run = training.run_training(None, skip_run, resume=True, overrides={"nan_policy": "stop", "epochs": 2},
                                progress=False, log=logs.append)
    assert from_run == 0 and "trained 2 epochs" in logs[-1]


def test_compare_rerun_keeps_finished_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "vae", "--particles", "2", "--out", str(out), "--epochs", "1",
            "--eval-particles", "5", "--eval-limit", "20", *TINY]
    assert main(args) == 0
    ckpts = {p.name: p.read_bytes() for p in (out / "vae" / "checkpoints").iterdir()}
    metrics = (out / "vae" / "metrics.jsonl").read_text()
    record_file = next((out / "vae" / "evaluations").glob("iw-k5-test-n20-s0-step*.json"))
    evaluation = record_file.read_text()
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (out / "vae" / "checkpoints").iterdir()} == ckpts
    assert (out / "vae" / "metrics.jsonl").read_text() == metrics
    assert record_file.read_text() == evaluation  # not evaluated again
    # a longer budget continues the finished run instead of training it again
    assert main([*args[:-len(TINY)], *TINY, "--epochs", "2"]) == 0
    records = [json.loads(line) for line in (out / "vae" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("train", 2), ("valid", 2), ("train", 4), ("valid", 4)]
    # a different setting is refused rather than mixed into the finished run
    assert main([*args, "--lr", "0.01"]) == 2
    assert "does not match the run" in capsys.readouterr().err


def test_architecture_from_the_command_line_is_recorded_and_listed(tmp_path, capsys):
    import json

    from deepem.cli import main

    out = tmp_path / "two"
    assert main(["--threads", "1", "train", "--dataset", "digits", "--architecture", "mlp-2layer",
                 "--architecture-option", "layer_sizes=[3,2]", "--architecture-option", "between=[8]",
                 "--hidden", "16", "--epochs", "1", "--train-limit", "40", "--valid-every", "0",
                 "--out", str(out), "--quiet"]) == 0
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["architecture"] == "mlp-2layer" and model["latent_dim"] == 5
    assert model["architecture_options"] == {"layer_sizes": [3, 2], "between": [8]}
    assert main(["list"]) == 0
    assert "mlp-2layer   two stochastic layers" in capsys.readouterr().out
