"""`deepem compare`: train several methods under one budget, evaluate each the same way, and write
a Markdown and CSV table and figures."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepem.evaluation.evaluate import evaluate_run
from deepem.report.figures import bar_chart, image_grid, learning_curves
from deepem.report.tables import csv_table, markdown_table
from deepem.training.config import TrainConfig
from deepem.training.files import atomic_write_bytes, atomic_write_json
from deepem.training.loading import load_trained_run
from deepem.training.run import RunFolder, RunFolderError
from deepem.training.trainer import Trainer

COLUMNS = [
    ("method", "method"),
    ("particles", "K"),
    ("epochs", "epochs"),
    ("test_ll", "test log-lik."),
    ("test_stderr", "± s.e."),
    ("train_ll", "train log-lik."),
    ("generalisation_gap", "gen. gap"),
    ("kl_to_prior", "KL(q‖p(z))"),
    ("active_units", "active units"),
    ("train_points_per_sec", "train pts/s"),
    ("train_seconds", "train s"),
]


def parse_method_spec(spec: str, default_particles: int) -> tuple[str, int, dict[str, Any], str]:
    """'iwae', 'iwae:k=50' or 'aiwae:k=5:temperatures=11' -> (method, K, options, label).

    Options after the name belong to that method alone; the label names its run folder and table row."""
    name, *parts = [p.strip() for p in spec.split(":")]
    particles, options = default_particles, {}
    for part in parts:
        key, eq, raw = part.partition("=")
        if not eq or not key:
            raise ValueError(f"method spec {spec!r} is not NAME[:KEY=VALUE...] (e.g. iwae:k=50)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.lower() == "k":
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"method spec {spec!r}: k must be a whole number >= 1")
            particles = value
        else:
            options[key.replace("-", "_")] = value
    label = name if not parts else "-".join([name, *(p.replace("=", "").replace("_", "") for p in parts)])
    return name, particles, options, label


def compare(base: TrainConfig, methods: Sequence[str], out: str | Path, eval_particles: int = 5000,
            eval_limit: int | None = None, train_eval_limit: int | None = 1000, force: bool = False,
            log: Callable[[str], None] = print, progress: bool = True) -> list[dict[str, Any]]:
    """Train `methods` with the settings of `base` and compare their test log-likelihoods."""
    if not methods:
        raise ValueError("give at least one method, e.g. --methods vae,iwae")
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        if not force and not (root / "comparison.json").exists():
            raise RunFolderError(f"{root} exists and is not empty; pass --force or choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "comparison.json", {"base_config": base.to_dict(), "methods": list(methods)})
    rows, curves = [], {}
    specs = [parse_method_spec(m, base.particles) for m in methods]
    configs = [(dataclasses.replace(base, method=method, particles=particles, model=dataclasses.replace(base.model),
                                    method_options={**base.method_options, **options}), label)
               for method, particles, options, label in specs]
    for config, _ in configs:
        config.validate()  # every method checked before hours of training
    for config, name in configs:
        run_dir = root / name
        log(f"== {name}: training {config.epochs} epochs, K = {config.particles}")
        trainer = Trainer(config, run_dir, log=log, progress=progress)
        trainer.start(force=True)
        summary = trainer.fit()
        data = trainer.data
        test = evaluate_run(run_dir, particles=eval_particles, split="test", limit=eval_limit,
                            seed=config.seed, progress=progress)
        train = evaluate_run(run_dir, particles=eval_particles, split="train", limit=train_eval_limit,
                             seed=config.seed, progress=progress)
        log(f"   {name}: test {test['estimator']} = {test['log_likelihood']:.3f} ± {test['stderr']:.3f}, "
            f"train {train['log_likelihood']:.3f}")
        rows.append(run_row(run_dir, name, summary["seconds"]))
        curves[name] = [r for r in RunFolder(run_dir).read_metrics() if r.get("kind") == "valid"]
        if data.image_shape is not None:
            sample_grid(run_dir, root / "figures" / f"samples-{name}.png")
    write_comparison(root, rows, curves)
    return rows


def run_row(run_dir: Path, label: str, train_seconds: float | None = None) -> dict[str, Any]:
    """One table row from what a finished, evaluated run folder holds: its config, its IW evaluations of
    the test and train splits, and the training throughput logged in metrics.jsonl (median over the
    logged windows, so validation time does not count)."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    test = json.loads((run_dir / "evaluations" / "iw-test.json").read_text())
    train = json.loads((run_dir / "evaluations" / "iw-train.json").read_text())
    records = RunFolder(run_dir).read_metrics()
    rates = sorted(r["points_per_sec"] for r in records if r.get("kind") == "train" and "points_per_sec" in r)
    epochs = max((r["epoch"] for r in records if r.get("kind") == "valid"), default=config["epochs"])
    return {
        "method": label,
        "particles": config["particles"],
        "epochs": epochs,
        "test_ll": test["log_likelihood"],
        "test_stderr": test["stderr"],
        "train_ll": train["log_likelihood"],
        "generalisation_gap": train["log_likelihood"] - test["log_likelihood"],
        "kl_to_prior": test["kl_to_prior"],
        "active_units": test["active_units"],
        "train_points_per_sec": rates[len(rates) // 2] if rates else None,
        "train_seconds": train_seconds,
        "estimator": test["estimator"],
        "test_points": test["n_points"],
    }


def write_comparison(root: Path, rows: list[dict[str, Any]], curves: dict[str, list[dict[str, Any]]]) -> None:
    estimator = rows[0]["estimator"] if rows else ""
    note = (f"\nTest log-likelihood: {estimator} on {rows[0]['test_points']} test points (nats, higher is "
            "better), on a fixed random subset when --eval-limit is set; train log-likelihood with the same "
            "estimator on a fixed random subset of the points trained on; "
            "gen. gap = train - test; KL(q‖p(z)) and active units on the test points.\n") if rows else ""
    atomic_write_bytes(root / "results.md", (markdown_table(rows, COLUMNS) + note).encode())
    atomic_write_bytes(root / "results.csv", csv_table(rows, COLUMNS).encode())
    atomic_write_bytes(root / "results.json", (json.dumps(rows, indent=2) + "\n").encode())
    learning_curves(curves, root / "figures" / "validation.png")
    bar_chart({r["method"]: r["test_ll"] for r in rows}, {r["method"]: r["test_stderr"] for r in rows},
              root / "figures" / "test_log_likelihood.png", ylabel="test log-likelihood (nats)")


def sample_grid(run_dir: Path, path: Path, n: int = 64, seed: int = 0) -> Path:
    """Decoder means of n draws from the prior, as an image grid."""
    import torch

    trained = load_trained_run(run_dir)
    if trained.data.image_shape is None:
        raise ValueError(f"dataset {trained.config.dataset!r} is not an image dataset; nothing to draw")
    images = trained.model.sample(n, generator=torch.Generator().manual_seed(seed))
    title = f"{trained.config.method} on {trained.config.dataset}, step {trained.step}"
    return image_grid(images.float().cpu(), trained.data.image_shape, path, title=title)
