"""What each `deepem` subcommand does, given its parsed arguments: the CLI (cli.py) only parses them
and calls one of these, whose return value is the process exit code."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from deepem.data import DATASETS
from deepem.declarations.methods import describe_options
from deepem.errors import InvalidInputError, ResultNotSavedError, UserError, not_saved_message
from deepem.evaluation.bdmc import bdmc
from deepem.evaluation.estimators import ESTIMATORS
from deepem.evaluation.settings import AISSettings
from deepem.files import atomic_write_json, check_outputs, write_file_set
from deepem.inference.capabilities import CONTINUOUS
from deepem.methods.registry import METHODS, method_options, method_settings
from deepem.models.config import ModelConfig
from deepem.models.config import describe as describe_architectures
from deepem.report.figures import image_grid
from deepem.settings import declared, typed_values
from deepem.training.config import TrainConfig
from deepem.training.distributed import finish, is_rank_zero
from deepem.training.run import RunFolder
from deepem.training.state import resume_command
from deepem.workflows import train as training
from deepem.workflows.assembly import is_file_dataset, resolve, run_config
from deepem.workflows.compare import ComparisonStopped, compare
from deepem.workflows.evaluate import evaluate_input, evaluate_run, evaluation_shard
from deepem.workflows.impute import BASELINE_CHOICES, run_imputation
from deepem.workflows.own_data import table_width
from deepem.workflows.own_runs import check_sample_path, impute_run_file, say, score_run_file, write_samples
from deepem.workflows.seeds import train_seeds
from deepem.workflows.trained_model import load_model


def typed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings typed on the command line: TrainConfig fields by name, model fields as
    "model.NAME", K as "particles" (flags not typed are absent, even where the value equals the default)."""
    typed: dict[str, Any] = typed_values(args, TrainConfig)
    typed.update({f"model.{k}": v for k, v in typed_values(args, ModelConfig).items()})
    for dest, name in (("options", "method_options"), ("architecture_options", "model.architecture_options")):
        if getattr(args, dest, None) is not None:
            typed[name] = dict(getattr(args, dest))
    if getattr(args, "optim", None) is not None:
        optim: dict[str, dict[str, Any]] = {}
        for group, key, value in args.optim:
            optim.setdefault(group, {})[key] = value
        typed["optim"] = optim
    if getattr(args, "particles", None) is not None:
        typed["particles"] = args.particles
    return typed


def config_from(args: argparse.Namespace) -> TrainConfig:
    """A new run's configuration: the typed settings over TrainConfig's declared defaults, and for a table
    of one's own over the table defaults (`run_config`)."""
    typed = typed_settings(args)
    dataset = typed.get("dataset")
    width = table_width(dataset, typed.get("header")) if is_file_dataset(dataset) else None
    return run_config(typed, table_columns=width)


def run_name(config: TrainConfig) -> str:
    """The default run folder of a resolved configuration (a file dataset named by its file's stem)."""
    return f"runs/{dataset_label(config.dataset)}-{config.method}-k{config.particles}-s{config.seed}"


def dataset_label(dataset: str) -> str:
    """A dataset's name in folder names: a registered name, or a file's stem."""
    return Path(dataset).stem if is_file_dataset(dataset) else dataset


def train(args: argparse.Namespace) -> int:
    if args.resume and args.seeds is not None:
        raise UserError("--seeds trains new runs; resume each seed of a vectorised group alone with --resume "
                        "OUT/seed-S")
    if args.resume:
        # Exactly the settings typed on this command line change the resumed run (even to a value equal to
        # the default); the rest comes from the run. A typed setting that may not change is an error naming it.
        return training.run_training(None, Path(args.resume), resume=True, overrides=typed_settings(args),
                                     progress=not args.quiet)
    config = resolve(config_from(args))  # K resolved for the folder name; errors before anything is written
    if args.seeds is not None:  # vectorised seeds (workflows/seeds.py): OUT/seed-S per seed
        seeds = range(config.seed, config.seed + args.seeds)
        out = Path(args.out or f"runs/{dataset_label(config.dataset)}-{config.method}-k{config.particles}-"
                               f"s{seeds[0]}-{seeds[-1]}")
        return train_seeds(config, seeds, out, force=args.force, progress=not args.quiet).exit_code
    return training.run_training(config, Path(args.out or run_name(config)), force=args.force,
                                 progress=not args.quiet)


def after_failure(args: argparse.Namespace) -> str:
    """What to do after a rank of an --nproc job died."""
    if args.command != "train":
        return "Run the same command again"
    run = args.resume or args.out or run_name(resolve(config_from(args)))
    if not RunFolder(Path(run)).is_run():  # it died before the run folder was made: nothing to resume
        return "No run folder was written; run the same command again"
    return f"Resume from the last checkpoint with: {resume_command(run)} --nproc {args.nproc}"


def compare_methods(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    base = config_from(args)
    out = Path(args.out or f"runs/compare-{dataset_label(base.dataset)}")
    try:
        compare(base, methods, out, estimator=args.eval_estimator, eval_particles=args.eval_particles,
                eval_limit=args.eval_limit,
                train_eval_limit=args.eval_limit or 1000, force=args.force, progress=not args.quiet,
                seeds=None if args.seeds is None else range(base.seed, base.seed + args.seeds))
    except ComparisonStopped as stopped:
        print(str(stopped), file=sys.stderr)
        return stopped.exit_code
    print((out / "results.md").read_text())
    print(f"table, CSV and figures in {out}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    name = "iw-observed" if args.observed and args.estimator == "iw" else args.estimator
    settings = typed_values(args, ESTIMATORS[name].Settings)  # the settings typed; the record fills the rest
    # a flag of another estimator's setting (-k with ais) is refused, not silently left out
    foreign = {s.name: s for cls in ESTIMATORS.values() for s in declared(cls.Settings).values()
               if s.name not in settings and getattr(args, s.name, None) is not None}
    if foreign:
        flags = ", ".join(sorted(s.option for s in foreign.values()))
        raise UserError(f"{flags}: not a setting of the {name} estimator (its settings: "
                        f"{', '.join(ESTIMATORS[name].Settings.__dataclass_fields__)})")
    if getattr(args, "input", None) is not None:  # rows of a file: the run's model alone, no training data
        if args.limit is not None:
            raise UserError("--limit picks points of a split; --input evaluates every row of its file")
        record = evaluate_input(args.run_dir, args.input, estimator=args.estimator, seed=args.seed,
                                batch_size=args.batch_size, device=args.device, progress=not args.quiet, **settings)
        _print_evaluation(record)
        print(f"written to {Path(args.run_dir) / record['file']} and {Path(args.run_dir) / 'evaluation.json'}")
        return 0
    try:
        record = evaluate_run(args.run_dir, estimator=name, split=args.split, limit=args.limit, seed=args.seed,
                              batch_size=args.batch_size, data_dir=args.data_dir, device=args.device,
                              progress=not args.quiet, observed=args.observed, **settings)
    except ResultNotSavedError as err:  # computed but not written: show it, then say why it was not saved
        _print_evaluation(err.result)
        raise
    if not is_rank_zero():  # a sharded evaluation: rank 0 reports
        return 0
    _print_evaluation(record)
    print(f"written to {Path(args.run_dir) / record['file']} and {Path(args.run_dir) / 'evaluation.json'}")
    return 0


def _print_evaluation(record: dict[str, Any]) -> None:
    stderr = "" if record["stderr"] is None else f" ± {record['stderr']:.3f}"
    print(f"{record['split']} log-likelihood ({record['estimator']}, {record['n_points']} points): "
          f"{record['log_likelihood']:.3f}{stderr} nats")
    kl = record["kl_to_prior"]
    kl_text = "n/a (q has no density)" if kl is None else f"{kl:.3f} nats"
    print(f"active units: {record['active_units']}, KL(q(z|x) || p(z)): {kl_text}, "
          f"{record['points_per_sec']:.1f} points/s; data: {record.get('data', record['split'])}")


def impute(args: argparse.Namespace) -> int:
    if (args.input is None) != (args.output is None):
        raise UserError("--input and --output go together: give both to fill a file's missing cells, or neither "
                        "to impute the run's own --split")
    if args.long and not args.draws:
        raise UserError("--long writes the --draws as one table; give --draws M with it, or leave it out")
    if args.input is None and (args.force or args.header is not None):
        raise UserError(f"{'--force' if args.force else '--header/--no-header'} is for --input FILE --output FILE; "
                        "imputing the run's own --split writes only RUN/imputation.json")
    if args.input is not None:
        with _rows_bar(args, "imputing rows") as bar:
            summary = impute_run_file(args.run_dir, args.input, args.output, proposal=args.proposal,
                                      particles=args.particles, draws=args.draws, seed=args.seed, long=args.long,
                                      header=args.header, progress=bar.update, force=args.force)
        print(f"filled {summary['n_missing']} missing cells of {summary['rows']} rows ({summary['estimator']}, "
              f"{summary['proposal']} proposal, parameters of step {summary['step']}); written to "
              + ", ".join(summary["outputs"]))
        return 0
    with tqdm(unit="pt", desc=f"imputing the {args.split} split", disable=True if args.quiet else None) as bar:
        summary = run_imputation(args.run_dir, split=args.split, particles=args.particles, draws=args.draws,
                                 seed=args.seed, data_dir=args.data_dir, limit=args.limit, proposal=args.proposal,
                                 baselines=BASELINE_CHOICES[args.baselines], progress=bar.update)
    base = "  ".join(f"{name} {summary[name]['mse']:.4f}" for name in ("mean", "iterative") if name in summary)
    points = f" (first {summary['n_points']} points)" if summary["limit"] else ""
    print(f"{summary['split']} split{points}, {summary['n_missing']} missing entries ({summary['missing']}): "
          f"imputation mse {summary['model']['mse']:.4f} ({summary['model']['estimator']}); baselines: "
          f"{base or 'none'}")
    if "note" in summary.get("iterative", {}):
        print(f"note: IterativeImputer {summary['iterative']['note']}")
    print(f"written to {Path(args.run_dir) / 'imputation.json'}")
    return 0


def score(args: argparse.Namespace) -> int:
    with _rows_bar(args, "scoring rows") as bar:
        summary = score_run_file(args.run_dir, args.input, args.output, proposal=args.proposal,
                                 particles=args.particles, seed=args.seed, header=args.header, progress=bar.update,
                                 force=args.force)
    print(f"{summary['rows']} rows, mean {summary['mean']:.3f} nats ({summary['estimator']}, {summary['units']}, "
          f"parameters of step {summary['step']}); written to {summary['output']} and {summary['output']}.json")
    return 0


def _rows_bar(args: argparse.Namespace, what: str) -> tqdm:
    return tqdm(unit="row", desc=what, disable=True if args.quiet else None)  # None: on a terminal only


def sample(args: argparse.Namespace) -> int:
    """Images: a grid of decoder means; a table: rows drawn from p(x), on the file's scale, as a table."""
    trained = load_model(args.run_dir, warn=say)
    shape = trained.transform.image_shape
    if shape is None and trained.transform.benchmark:
        raise InvalidInputError(f"dataset {trained.transform.dataset!r} is not an image dataset; nothing to draw")
    if shape is not None:
        path = Path(args.output or Path(args.run_dir) / "figures" / "samples.png")
        if path.suffix.lower() != ".png":
            raise InvalidInputError(f"{path}: the samples of an image model are drawn as a PNG grid; give a .png "
                                    "--output")
        check_outputs([path], args.force)  # before any work
        images = torch.from_numpy(trained.sample(args.n, seed=args.seed, mean=True)).float()
        with tempfile.TemporaryDirectory() as folder:  # drawn aside, then written whole (or not at all)
            drawn = image_grid(images, shape, Path(folder) / "grid.png",
                               title=f"{trained.method} on {Path(trained.transform.dataset).name}, step {trained.step}")
            write_file_set({path: drawn.read_bytes()}, args.force)
    else:
        path = check_sample_path(args.output or Path(args.run_dir) / "samples.csv", args.force)
        path = write_samples(trained.sample(args.n, seed=args.seed), trained.transform.columns,
                             trained.transform.header, path, force=args.force)
    print(f"wrote {path}")
    return 0


def bdmc_bounds(args: argparse.Namespace) -> int:
    parallel, shard = evaluation_shard(args.device)  # a launched job shares the batches (--nproc)
    # the model alone: the points are simulated from it, so the data it trained on are not read
    trained = load_model(args.run_dir, device=args.device, warn=say, data_dir=args.data_dir)
    if CONTINUOUS not in trained.model.capabilities():  # (AIS's own message offers an option bdmc lacks)
        raise InvalidInputError(f"bdmc runs AIS with HMC, which needs continuous latents; this run's are "
                                f"{trained.model.latent_support}, so there is no AIS to check. Its importance-"
                                f"weighted estimate needs no such check: deepem evaluate {args.run_dir}")
    with tqdm(total=args.points, unit="pt", desc="bdmc (forward and reverse AIS)",
              disable=True if args.quiet or not is_rank_zero() else None) as bar:  # None: on a terminal only
        try:
            result = bdmc(trained.model, n_points=args.points, seed=args.seed, batch_size=args.batch_size,
                          progress=bar.update, shard=shard, **typed_values(args, AISSettings))
        finally:
            finish(parallel)
    if not is_rank_zero():
        return 0
    summary = {**result.summary(), "checkpoint": trained.checkpoint, "step": trained.step}
    print(f"BDMC on {args.points} points simulated from the model: lower {float(result.lower.mean()):.3f}, "
          f"upper {float(result.upper.mean()):.3f}, gap {result.gap:.3f} nats "
          f"(AIS estimates at these settings are off by at most about the gap)")
    path = Path(args.run_dir) / "bdmc.json"
    try:  # the result is on the screen first: a folder that cannot be written loses nothing computed
        atomic_write_json(path, summary, checksum=True)
    except OSError as err:
        raise ResultNotSavedError(not_saved_message(path, err), summary) from err
    print(f"written to {path}")
    return 0


def list_all(args: argparse.Namespace) -> int:
    print("methods (options with their defaults; set K with --particles, others with --option KEY=VALUE):")
    for name in sorted(METHODS):
        opts = ", ".join(f"{k}={v!r}" for k, v in method_options(name).items())
        needs = ", ".join(sorted(METHODS[name].requires))
        print(f"  {name:12s} {opts}\n  {'':12s} needs: {needs}")
        for line in describe_options(method_settings(name)):
            print(f"  {'':12s}   {line}")
    print("  on incomplete data (--missing) every method uses the mask: log p(x|z) counts the observed entries "
          "only and q(z|x) sees x zero-filled, so each bound is one of log p(x_o) (iwae's is the MIWAE bound; miwae "
          "is iwae with the MIWAE paper's settings; miss-iwem also completes x from the model)")
    print("architectures (--architecture):")
    for name, text in sorted(describe_architectures().items()):
        print(f"  {name:12s} {text}")
    print("datasets (files are looked for in --data-dir, else $DEEPEM_DATA, else ~/.cache/deepem):")
    for name in sorted(DATASETS):
        print(f"  {name:15s} {DATASETS[name].summary()}")
    return 0
