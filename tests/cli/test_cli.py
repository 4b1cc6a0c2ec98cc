"""The command line end to end on the embedded dataset, with a tiny model so it takes seconds."""

import json

import pytest

from deepem.cli import main

TINY = ["--dataset", "digits", "--latent-dim", "4", "--hidden", "16", "--epochs", "2", "--batch-size", "50",
        "--quiet", "--valid-particles", "10"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "iwae"
    assert main(["train", "--method", "iwae", "--particles", "3", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_run_folder(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["method"] == "iwae" and config["method_options"]["particles"] == 3
    assert config["model"]["latent_dim"] == 4
    assert config["model"]["likelihood"] == "bernoulli"  # filled in from the dataset
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["epoch"] for r in valid] == [1, 2]
    assert all(r["valid_bound"] < 0 for r in valid)
    assert any(r["kind"] == "train" and r["points_per_sec"] > 0 for r in records)
    assert list((trained_run / "checkpoints").glob("ckpt-*.pt"))


def test_evaluate_is_seeded_and_writes_evaluation_json(trained_run, capsys):
    args = ["evaluate", str(trained_run), "--particles", "200", "--limit", "60", "--quiet"]
    assert main(args) == 0
    first = json.loads((trained_run / "evaluation.json").read_text())
    assert main(args) == 0
    second = json.loads((trained_run / "evaluation.json").read_text())
    for key in ("log_likelihood", "stderr", "estimator", "particles", "n_points", "active_units", "kl_to_prior"):
        assert key in first
    assert first["log_likelihood"] == second["log_likelihood"]
    assert -64 * 0.7 < first["log_likelihood"] < 0  # 64 binary pixels: better than coin flips, below zero
    assert first["n_points"] == 60 and first["particles"] == 200 and first["estimator"] == "IWAE bound, K=200"
    assert 0 <= first["active_units"] <= 4
    assert (trained_run / "evaluations" / f"iw-k200-test-n60-s0-step{first['step']}-per-point.npy").exists()
    assert "log-likelihood" in capsys.readouterr().out


def test_sample_writes_png(trained_run, tmp_path):
    path = tmp_path / "grid.png"
    assert main(["sample", str(trained_run), "--n", "16", "--output", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_run_is_not_overwritten_without_force(trained_run, capsys):
    assert main(["train", "--out", str(trained_run), *TINY]) == 2
    assert "--force" in capsys.readouterr().err


def test_compare_writes_table_csv_and_figures(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "vae,iwae", "--particles", "2", "--out", str(out),
                 "--eval-particles", "50", "--eval-limit", "40", *TINY]) == 0
    table = (out / "results.md").read_text()
    assert "| vae |" in table and "| iwae |" in table
    assert (out / "results.csv").read_text().splitlines()[0].startswith("method,particles")
    assert (out / "figures" / "validation.png").exists()
    assert (out / "figures" / "test_log_likelihood.png").exists()
    assert (out / "figures" / "samples-iwae.png").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--method", "nope"], "invalid method = 'nope'"),
    (["train", "--dataset", "nope"], "unknown dataset"),
    (["evaluate", "/nonexistent/run"], "not a deepem run folder"),
    (["compare", "--methods", "vae,nope"], "invalid method = 'nope'"),
    (["train", "--option", "temperature=3"], "has no option temperature"),
])
def test_bad_input_gives_a_clear_error(args, message, capsys, tmp_path):
    if args[0] != "evaluate":
        args = [*args, "--out", str(tmp_path / "x"), "--quiet"]
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args", [["train", "--particles", "0"], ["train", "--lr", "-1"],
                                  ["train", "--hidden", "20,x"], ["train", "--option", "novalue"]])
def test_argument_errors_exit_with_usage(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_evaluate_with_ais_names_the_estimator(trained_run):
    assert main(["--threads", "1", "evaluate", str(trained_run), "--estimator", "ais", "--temperatures", "20",
                 "--chains", "4", "--limit", "10", "--quiet"]) == 0
    record = json.loads((trained_run / "evaluation.json").read_text())
    assert record["estimator"].startswith("AIS, T=20, chains=4")
    assert record["temperatures"] == 20 and record["n_points"] == 10 and record["log_likelihood"] < 0
    assert list((trained_run / "evaluations").glob("ais-T*-test-*.json"))


def test_bdmc_writes_bounds(trained_run):
    assert main(["bdmc", str(trained_run), "--points", "5", "--temperatures", "30", "--chains", "4"]) == 0
    record = json.loads((trained_run / "bdmc.json").read_text())
    assert record["n_points"] == 5 and record["lower"] < 0 and abs(record["gap"]) < 5
