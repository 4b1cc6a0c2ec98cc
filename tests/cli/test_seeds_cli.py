"""`deepem train --seeds N`: N vectorised seeds, each in OUT/seed-S, each a run the other commands accept."""

import json

from deepem.cli import main

TINY = ["--dataset", "digits", "--latent-dim", "4", "--hidden", "16", "--epochs", "1", "--batch-size", "50",
        "--quiet", "--valid-particles", "10", "--train-limit", "200"]


def test_train_seeds_writes_one_run_folder_per_seed_that_evaluate_accepts(tmp_path, capsys):
    out = tmp_path / "group"
    assert main(["train", "--method", "iwae", "-k", "3", "--seeds", "2", "--seed", "7", "--out", str(out), *TINY]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed-7", "seed-8"]
    for seed in (7, 8):
        config = json.loads((out / f"seed-{seed}" / "config.json").read_text())
        assert config["seed"] == seed and config["method"] == "iwae" and config["method_options"]["particles"] == 3
        assert main(["evaluate", str(out / f"seed-{seed}"), "--particles", "20", "--limit", "20", "--quiet"]) == 0
    assert "2 seeds" in capsys.readouterr().out


def test_train_seeds_refuses_an_unsupported_method_in_one_line(tmp_path, capsys):
    assert main(["train", "--method", "rws", "--seeds", "2", "--out", str(tmp_path / "g"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepem train: error: cannot vectorise method 'rws'") and "\n" not in err
    assert "vae, iwae, iwae-stl" in err and not (tmp_path / "g").exists()


def test_train_seeds_with_resume_is_refused(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--seeds", "2"]) == 2
    assert "resume each seed of a vectorised group alone" in capsys.readouterr().err


def test_compare_with_seeds_has_a_row_per_method_and_seed(tmp_path):
    """iwae's seeds are vectorised, rws's (not vectorisable) trained one after another; each is a row."""
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "iwae,rws", "-k", "2", "--seeds", "2", "--out", str(out),
            "--eval-particles", "20", "--eval-limit", "20", *TINY]
    assert main(args) == 0
    table = (out / "results.md").read_text()
    for name in ("iwae-s0", "iwae-s1", "rws-s0", "rws-s1"):
        assert f"| {name} |" in table
    assert json.loads((out / "iwae" / "seed-1" / "config.json").read_text())["seed"] == 1
    assert main(args) == 0  # re-run: every seed run is complete and kept (resumed alone, nothing to train)
    assert (out / "results.md").read_text().count("| iwae-s") == 2


def test_seeds_with_nproc_is_refused_in_one_line(tmp_path, capsys):
    from deepem.cli import main

    code = main(["train", "--dataset", "digits", "--method", "iwae", "--seeds", "2", "--nproc", "2",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--seeds and --nproc do not combine" in err[0]
    assert not (tmp_path / "r").exists()


def test_each_seed_of_a_group_is_timed_by_its_share_of_the_group(tmp_path):
    """Issue 23: a seed's "train s" is its share of the vectorised group's time, not the group's time."""
    from deepem.models.config import ModelConfig
    from deepem.training.config import TrainConfig
    from deepem.workflows.seeds import train_seeds

    config = TrainConfig(dataset="digits", method="iwae", epochs=1, batch_size=50, train_limit=200, valid_particles=10,
                         model=ModelConfig(latent_dim=4, hidden=[16]), method_options={"particles": 2})
    outcome = train_seeds(config, [0, 1, 2], tmp_path / "g", progress=False, log=lambda text: None)
    group = outcome.summary["seconds"]
    for summary in outcome.summary["seeds"]:
        assert summary["seconds"] == group / 3 and summary["group_seconds"] == group
        assert summary["seeds_in_group"] == 3
