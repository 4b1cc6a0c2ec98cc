"""`deepem compare`: train several methods under one budget, evaluate each the same way, and write
a Markdown and CSV table and figures (report/compare.py).

Each method's run is trained through the same path as `deepem train` (workflows/train.py: lock,
graceful Ctrl-C, resume): re-running a comparison without --force resumes unfinished method runs and
keeps finished ones (and their evaluations), so an interrupted comparison loses at most one step."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from deepem.errors import InvalidInputError, UserError
from deepem.evaluation.driver import Estimator
from deepem.evaluation.estimators import ESTIMATORS, make_estimator
from deepem.files import ChecksumError, atomic_write_json, read_json
from deepem.report.compare import run_row, write_comparison
from deepem.report.figures import image_grid
from deepem.settings import text_value
from deepem.training.config import TrainConfig
from deepem.training.run import RunFolder, RunFolderError
from deepem.workflows.assembly import resolve
from deepem.workflows.evaluate import evaluate_run, evaluation_tag
from deepem.workflows.loading import TrainedRun, load_trained_run
from deepem.workflows.seeds import train_method_seeds
from deepem.workflows.train import train_run
from deepem.workflows.trained_model import load_model


class ComparisonStopped(Exception):
    """A signal stopped one of the method runs (after checkpointing it); re-run to resume."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code

def parse_method_spec(spec: str) -> tuple[str, dict[str, Any], str]:
    """'iwae', 'iwae:particles=50' or 'aiwae:particles=5:temperatures=11' -> (method, options, label);
    `k` is accepted as a short name of `particles` (K). The options after the name belong to that method
    alone (over the command line's); the label names its run folder and table row (K as kK)."""
    name, *parts = [p.strip() for p in spec.split(":")]
    options: dict[str, Any] = {}
    for part in parts:
        key, eq, raw = part.partition("=")
        if not eq or not key:
            raise UserError(f"method spec {spec!r} is not NAME[:KEY=VALUE...] (e.g. iwae:particles=50)")
        key = key.strip().replace("-", "_")
        options["particles" if key.lower() == "k" else key] = text_value(raw.strip())
    return name, options, "-".join([name, *map(_label_part, parts)])


def _label_part(part: str) -> str:
    """'particles=50' (or 'k=50') -> 'k50', as in train's run names; 'alpha_step=0.1' -> 'alphastep0.1'."""
    key, _, raw = part.partition("=")
    return f"k{raw.strip()}" if key.strip().lower() in ("k", "particles") else part.replace("=", "").replace("_", "")


def compare(base: TrainConfig, methods: Sequence[str], out: str | Path, eval_particles: int = 5000,
            eval_limit: int | None = None, train_eval_limit: int | None = 1000, force: bool = False,
            log: Callable[[str], None] = print, progress: bool = True,
            seeds: Sequence[int] | None = None, estimator: str | Estimator = "iw") -> list[dict[str, Any]]:
    """Train `methods` with the settings of `base` and compare their test log-likelihoods.

    estimator: what every run is evaluated with (a registered name, or an estimator object), K =
    `eval_particles` where its settings have K.

    seeds: train each method once per seed, into OUT/METHOD/seed-S, one table row per seed (METHOD-sS);
    the seeds of a method that allows it are trained as one vectorised computation (workflows/seeds.py)."""
    if not methods:
        raise UserError("give at least one method, e.g. --methods vae,iwae")
    root = Path(out)
    est = comparison_estimator(estimator, eval_particles)  # a bad estimator setting fails before training
    specs = [parse_method_spec(m) for m in methods]
    labels = [label for *_, label in specs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UserError(f"--methods names {', '.join(repeated)} more than once; give each method spec once")
    configs = [(dataclasses.replace(base, method=method, model=dataclasses.replace(base.model),
                                    method_options={**base.method_options, **options}), label)
               for method, options, label in specs]
    # every method checked before anything is written or trained; K resolved (the method's default if not given)
    configs = [(resolve(config), label) for config, label in configs]
    if root.exists() and any(root.iterdir()) and not (root / "comparison.json").exists():
        # Not a comparison folder: a user's own files are never overwritten, --force or not.
        raise RunFolderError(f"{root} exists, is not empty and is not a deepem comparison (no comparison.json); "
                             "choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "comparison.json", {"base_config": base.to_dict(), "methods": list(methods)}
                      | ({"seeds": list(seeds)} if seeds else {}))
    rows, curves = [], {}
    for config, label in configs:
        if seeds:  # --seeds: every seed of the method (vectorised where it can be), a row per seed
            log(f"== {label}: {len(seeds)} seeds, {config.epochs} epochs, K = {config.particles}")
            runs = [(f"{label}-s{seed}", run_dir, summary, code) for seed, run_dir, summary, code in
                    train_method_seeds(config, seeds, root / label, force=force, progress=progress, log=log)]
        else:
            run_dir = root / label
            resume = not force and RunFolder(run_dir).is_run()
            log(f"== {label}: {'resuming' if resume else 'training'} {config.epochs} epochs, K = {config.particles}")
            outcome = train_run(config, run_dir, resume=resume, force=True, log=log, progress=progress)
            runs = [(label, run_dir, outcome.summary, outcome.exit_code)]
        for name, run_dir, summary, code in runs:
            if code != 0 or summary is None:
                raise ComparisonStopped(code, f"comparison stopped during {name}; re-run the same command "
                                        "(without --force) to resume it")
            _add_row(rows, curves, root, name, run_dir, summary, config.seed, est, eval_limit,
                     train_eval_limit, progress, log)
    write_comparison(root, rows, curves)
    return rows


def _add_row(rows: list[dict[str, Any]], curves: dict[str, Any], root: Path, name: str, run_dir: Path,
             summary: dict[str, Any], seed: int, estimator: Estimator, eval_limit: int | None,
             train_eval_limit: int | None, progress: bool, log: Callable[[str], None]) -> None:
    """Evaluate one finished run and add its table row, validation curve and sample grid. The run is
    loaded once: both evaluations and the sample grid use the same loaded model."""
    trained = load_trained_run(run_dir, warn=log)
    test = _evaluate(run_dir, trained, estimator, "test", eval_limit, seed, progress)
    train = _evaluate(run_dir, trained, estimator, "train", train_eval_limit, seed, progress)
    stderr = "" if test["stderr"] is None else f" ± {test['stderr']:.3f}"  # (None: one test point)
    log(f"   {name}: test {test['estimator']} = {test['log_likelihood']:.3f}{stderr}, "
        f"train {train['log_likelihood']:.3f}")
    row = run_row(run_dir, name, summary["seconds"], test=test, train=train)
    group = summary.get("seeds_in_group", 1)
    if group > 1 and row["train_points_per_sec"] is not None:
        # a vectorised seed: its points over its share of the group's time (as its "train s" is), not over
        # the whole group's time
        row["train_points_per_sec"] *= group
    rows.append(row)
    curves[name] = [r for r in RunFolder(run_dir).read_metrics() if r.get("kind") == "valid"]
    if trained.data.image_shape is not None:
        draw_samples(trained, root / "figures" / f"samples-{name}.png")


def comparison_estimator(estimator: str | Estimator = "iw", particles: int | None = None) -> Estimator:
    """The estimator every run of a comparison is evaluated with: `estimator` (a registered name or an
    object) with K = `particles` where its settings declare K (an estimator without K ignores it)."""
    if isinstance(estimator, Estimator):
        return estimator
    declares_k = estimator in ESTIMATORS and "particles" in ESTIMATORS[estimator].Settings.__dataclass_fields__
    return make_estimator(estimator, **({"particles": particles} if declares_k else {}))


def _evaluate(run_dir: Path, trained: TrainedRun, estimator: Estimator, split: str, limit: int | None, seed: int,
              progress: bool) -> dict[str, Any]:
    """The run's evaluation of `split` by `estimator`: the one on file when it was made of the parameters
    evaluation uses now (its file name holds their step) with these settings, else a new one."""
    path = run_dir / "evaluations" / f"{evaluation_tag(estimator, split, False, limit, seed, trained.step)}.json"
    try:
        record = read_json(path) if path.is_file() else None
    except ChecksumError:
        record = None
    if (record is not None and record.get("estimator_name", estimator.name) == estimator.name
            and record.get("seed") == seed and record.get("limit") == limit):
        return {**record, "file": f"evaluations/{path.name}"}  # (the table finds its per-point values by it)
    return evaluate_run(run_dir, estimator=estimator, split=split, limit=limit, seed=seed, progress=progress,
                        trained=trained)


def sample_grid(run_dir: Path, path: Path, n: int = 64, seed: int = 0) -> Path:
    """Decoder means of n draws from the prior of a run's model, as an image grid (the model alone: the
    run's data are not read)."""
    trained = load_model(run_dir)
    if trained.transform.image_shape is None:
        raise InvalidInputError(f"dataset {trained.transform.dataset!r} is not an image dataset; nothing to draw")
    images = trained.model.sample(n, generator=torch.Generator().manual_seed(seed))
    title = f"{trained.method} on {trained.transform.dataset}, step {trained.step}"
    return image_grid(images.float().cpu(), trained.transform.image_shape, path, title=title)


def draw_samples(trained: TrainedRun, path: Path, n: int = 64, seed: int = 0) -> Path:
    """Decoder means of n draws from the prior of an already loaded run's model, as an image grid."""
    if trained.data.image_shape is None:
        raise InvalidInputError(f"dataset {trained.config.dataset!r} is not an image dataset; nothing to draw")
    images = trained.model.sample(n, generator=torch.Generator().manual_seed(seed))
    title = f"{trained.config.method} on {trained.config.dataset}, step {trained.step}"
    return image_grid(images.float().cpu(), trained.data.image_shape, path, title=title)
