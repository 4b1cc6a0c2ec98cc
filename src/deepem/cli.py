"""The `deepem` command: train (one method, a run folder), evaluate (log-likelihood of a run), compare (several
methods, one table), impute (missing entries of a run trained with --missing), sample (image grid), bdmc (how
far to trust AIS), list (methods, architectures and datasets)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from deepem.data import DATASETS
from deepem.errors import ResultNotSavedError, UserError, not_saved_message, quiet_on_broken_pipe
from deepem.evaluation.bdmc import bdmc
from deepem.evaluation.estimators import ESTIMATORS
from deepem.evaluation.settings import AISSettings
from deepem.files import atomic_write_json
from deepem.methods.registry import METHODS, method_options
from deepem.models.config import ARCHITECTURES, ENCODER_KINDS, LATENTS, ModelConfig
from deepem.models.config import describe as describe_architectures
from deepem.training.allocator import keep_freed_memory
from deepem.training.config import NAN_POLICIES, TrainConfig
from deepem.training.distributed import (
    EXIT_LOST_PEER,
    check_launched,
    default_threads,
    finish,
    is_rank_zero,
    launched,
    local_world_size,
    lost_peer,
)
from deepem.training.optim import OPTIM_KEYS
from deepem.training.schedules import SCHEDULES
from deepem.training.state import resume_command
from deepem.workflows.assembly import resolve
from deepem.workflows.compare import ComparisonStopped, compare, sample_grid
from deepem.workflows.estimator_flags import add_estimator_arguments, estimator_settings
from deepem.workflows.evaluate import evaluate_run, evaluation_shard
from deepem.workflows.impute import run_imputation
from deepem.workflows.launch import launch
from deepem.workflows.loading import load_trained_run
from deepem.workflows.seeds import train_seeds
from deepem.workflows.train import run_training

EXIT_INTERRUPTED = 130  # the shell's code for a SIGINT

#: CLI destination -> TrainConfig field (model fields as "model.NAME"). Every such option defaults to
#: None, meaning "not typed": TrainConfig's own defaults apply to a new run, and a resumed run changes
#: exactly the fields typed on its command line, even to a value equal to the default.
CONFIG_ARGS = {
    "dataset": "dataset", "data_dir": "data_dir", "latent_dim": "model.latent_dim", "hidden": "model.hidden",
    "activation": "model.activation", "likelihood": "model.likelihood", "latent": "model.latent",
    "encoder": "model.encoder", "noise_dim": "model.noise_dim", "train_limit": "train_limit",
    "missing": "missing", "missing_seed": "missing_seed", "architecture": "model.architecture",
    "architecture_options": "model.architecture_options",
    "particles": "particles", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
    "adam_eps": "adam_eps", "schedule": "schedule", "options": "method_options", "optim": "optim",
    "seed": "seed", "valid_every": "valid_every", "valid_particles": "valid_particles", "patience": "patience",
    "checkpoint_every": "checkpoint_every", "checkpoint_every_steps": "checkpoint_every_steps",
    "keep_checkpoints": "keep_checkpoints", "nan_policy": "nan_policy", "max_rollbacks": "max_rollbacks",
    "max_consecutive_skips": "max_consecutive_skips", "device": "device", "dtype": "dtype",
}

DATA_DIR_HELP = "folder with dataset files (default: $DEEPEM_DATA or ~/.cache/deepem)"


def _parse_option(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as JSON when it is JSON (numbers, true/false), else as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"method option {text!r} is not KEY=VALUE (e.g. --option alpha_step=0.01)")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


def _parse_optim(text: str) -> tuple[str, str, Any]:
    """GROUP:KEY=VALUE, e.g. phi:lr=3e-4, phi:betas=0.9,0.99 or discriminator:steps=5."""
    group, colon, rest = text.partition(":")
    key, eq, raw = rest.partition("=")
    key = key.strip()
    if not (colon and eq and group.strip() and key):
        raise argparse.ArgumentTypeError(f"--optim {text!r} is not GROUP:KEY=VALUE (e.g. phi:lr=3e-4, "
                                         "phi:betas=0.9,0.99, discriminator:steps=5)")
    if key not in OPTIM_KEYS:
        raise argparse.ArgumentTypeError(f"--optim {text!r}: unknown key {key!r}; allowed keys: "
                                         f"{', '.join(OPTIM_KEYS)}")
    try:
        value: Any = ([float(v) for v in raw.split(",")] if key == "betas" else
                      int(raw) if key == "steps" else float(raw))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--optim {text!r}: {key} takes "
                                         + ("two numbers like 0.9,0.999" if key == "betas" else
                                            "a whole number" if key == "steps" else "a number")) from None
    return group.strip(), key, value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated widths like 200,200, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"hidden widths must be >= 1, got {text!r}")
    return widths


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    # No defaults here (None = not typed): TrainConfig holds them, shown in the help for reference.
    d, m = TrainConfig(), ModelConfig()
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", help=f"dataset name (see `deepem list`); default {d.dataset}")
    g.add_argument("--data-dir", help="folder with dataset files (default: $DEEPEM_DATA or ~/.cache/deepem)")
    g.add_argument("--latent-dim", type=_positive_int, help="default 50 (200 with --latent bernoulli)")
    g.add_argument("--hidden", type=_widths, help="MLP widths, e.g. 200,200 (the default)")
    g.add_argument("--activation", help=f"default {m.activation}")
    g.add_argument("--likelihood", choices=["bernoulli", "gaussian"],
                   help="default: the dataset's (bernoulli for binary images)")
    g.add_argument("--architecture", choices=sorted(ARCHITECTURES),
                   help="network preset (default mlp; `deepem list` describes them): mlp-2layer is Burda et al.'s "
                        "two stochastic layers, conv the gated CNN of Tomczak & Welling (28x28 images), sbn the "
                        "200-200-200 sigmoid belief net of NVIL/VIMCO (with --latent bernoulli)")
    g.add_argument("--architecture-option", dest="architecture_options", action="append", type=_parse_option,
                   metavar="KEY=VALUE", help="an option of the preset (repeatable), e.g. layer_sizes=[100,50]")
    g.add_argument("--latent", choices=list(LATENTS),
                   help="gaussian (the default: N(0, I) prior, diagonal Gaussian q) or bernoulli (a sigmoid belief "
                        "net: learnable Bernoulli prior and Bernoulli q; train it with rws, vimco, nvil, wake-sleep)")
    g.add_argument("--encoder", choices=list(ENCODER_KINDS),
                   help="explicit (the default: q has a density) or implicit (z = f(x, ε), no density; evaluate "
                        "with --estimator ais)")
    g.add_argument("--noise-dim", type=_positive_int,
                   help="noise dimension of an implicit encoder (default 32, as IWAVB)")
    g.add_argument("--train-limit", type=_positive_int, help="train on the first N points only")
    g.add_argument("--missing", metavar="SPEC",
                   help="train on incomplete data: mcar:P removes each entry with probability P; patches:N removes "
                        "N of the 3x3 patches of each 28x28 image (masks drawn once, saved with the run)")
    g.add_argument("--missing-seed", type=int, help="seed of the missing-data masks (default 0)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--particles", "-k", type=_positive_int,
                   help="K, particles per data point (default: the method's own, e.g. 5 for iwae, 50 for rem-v1; "
                        "`deepem list` shows them)")
    g.add_argument("--epochs", type=_positive_int, help=f"default {d.epochs}")
    g.add_argument("--batch-size", type=_positive_int, help=f"default {d.batch_size}")
    g.add_argument("--lr", type=_positive_float, help=f"base learning rate of every group (Adam); default {d.lr:g}")
    g.add_argument("--adam-eps", type=_positive_float, help=f"default {d.adam_eps:g}")
    g.add_argument("--optim", action="append", type=_parse_optim, metavar="GROUP:KEY=VALUE",
                   help="optimiser setting of one parameter group (repeatable): GROUP is theta, phi or a group "
                        "the method owns; KEY is lr, betas (e.g. 0.9,0.99) or steps (optimiser steps per batch). "
                        "E.g. --optim phi:lr=3e-4 --optim discriminator:steps=5")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help="default constant; 'burda': lr * 10^(-i/7) for 3^i epochs, i = 0..7 (Burda et al. 2015)")
    g.add_argument("--option", "-o", dest="options", action="append", type=_parse_option,
                   metavar="KEY=VALUE", help="a method option (repeatable); `deepem list` shows them")
    g.add_argument("--seed", type=int, help=f"default {d.seed}")
    g = p.add_argument_group("run")
    g.add_argument("--valid-every", type=int, help="epochs between validation bounds (0: never); default 1")
    g.add_argument("--valid-particles", type=_positive_int, help=f"default {d.valid_particles}")
    g.add_argument("--patience", type=int, metavar="N",
                   help="early stopping: stop when N validations in a row bring no new best bound, and evaluate "
                        "the best validation's parameters (0: off, the default; --epochs stays the maximum)")
    g.add_argument("--checkpoint-every", type=_positive_int, help="epochs between checkpoints; default 1")
    g.add_argument("--checkpoint-every-steps", type=int, help="also every N steps (0: off, the default)")
    g.add_argument("--keep-checkpoints", type=_positive_int, help=f"default {d.keep_checkpoints}")
    g.add_argument("--nan-policy", choices=NAN_POLICIES,
                   help="on a NaN/inf loss, log-weight or gradient: stop with a diagnosis (the default), skip the "
                        "step, or roll back to the last checkpoint with half the learning rate")
    g.add_argument("--max-rollbacks", type=int, help=f"default {d.max_rollbacks}")
    g.add_argument("--max-consecutive-skips", type=int, help=f"default {d.max_consecutive_skips}")
    g.add_argument("--device", help="cpu (the default), cuda or cuda:N")
    g.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def typed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields typed on the command line ({field: value}, model fields as "model.NAME")."""
    typed = {}
    for dest, name in CONFIG_ARGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest in ("options", "architecture_options"):
            value = dict(value)
        elif dest == "optim":
            optim: dict[str, dict[str, Any]] = {}
            for group, key, v in value:
                optim.setdefault(group, {})[key] = v
            value = optim
        typed[name] = value
    return typed


def _config_from(args: argparse.Namespace, method: str) -> TrainConfig:
    typed = typed_settings(args)
    model = ModelConfig(**{k.removeprefix("model."): v for k, v in typed.items() if k.startswith("model.")})
    return TrainConfig(method=method, model=model, **{k: v for k, v in typed.items() if not k.startswith("model.")})


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume and args.seeds is not None:
        raise UserError("--seeds trains new runs; resume each seed of a vectorised group alone with --resume "
                        "OUT/seed-S")
    if args.resume:
        # Exactly the settings typed on this command line change the resumed run (even to a value equal
        # to the default); the rest comes from the run. A typed field that may not change is an error.
        typed = typed_settings(args)
        if args.method is not None:
            typed["method"] = args.method
        model_fields = sorted(k for k in typed if k.startswith("model."))
        if model_fields:
            typed = {k: v for k, v in typed.items() if not k.startswith("model.")}
            typed["model"] = model_fields  # refused by with_overrides, which names the field
        return run_training(None, Path(args.resume), resume=True, overrides=typed, progress=not args.quiet)
    config = _config_from(args, args.method or "iwae")
    config = resolve(config)  # K resolved for the folder name; errors before anything is written
    if args.seeds is not None:  # vectorised seeds (workflows/seeds.py): OUT/seed-S per seed
        seeds = range(config.seed, config.seed + args.seeds)
        out = Path(args.out or f"runs/{config.dataset}-{config.method}-k{config.particles}-"
                               f"s{seeds[0]}-{seeds[-1]}")
        return train_seeds(config, seeds, out, force=args.force, progress=not args.quiet).exit_code
    out = Path(args.out or f"runs/{config.dataset}-{config.method}-k{config.particles}-s{config.seed}")
    return run_training(config, out, force=args.force, progress=not args.quiet)


def cmd_evaluate(args: argparse.Namespace) -> int:
    name = "iw-observed" if args.observed and args.estimator == "iw" else args.estimator
    try:
        record = evaluate_run(args.run_dir, estimator=name, split=args.split, limit=args.limit, seed=args.seed,
                              batch_size=args.batch_size, data_dir=args.data_dir, device=args.device,
                              progress=not args.quiet, observed=args.observed, **estimator_settings(args, name))
    except ResultNotSavedError as err:  # computed but not written: show it, then say why it was not saved
        _print_evaluation(err.result)
        raise
    if not is_rank_zero():  # a sharded evaluation: rank 0 reports
        return 0
    _print_evaluation(record)
    print(f"written to {Path(args.run_dir) / record['file']} and {Path(args.run_dir) / 'evaluation.json'}")
    return 0


def _print_evaluation(record: dict[str, Any]) -> None:
    print(f"{record['split']} log-likelihood ({record['estimator']}, {record['n_points']} points): "
          f"{record['log_likelihood']:.3f} ± {record['stderr']:.3f} nats")
    kl = record["kl_to_prior"]
    kl_text = "n/a (q has no density)" if kl != kl else f"{kl:.3f} nats"
    print(f"active units: {record['active_units']}, KL(q(z|x) || p(z)): {kl_text}, "
          f"{record['points_per_sec']:.1f} points/s; data: {record.get('data', record['split'])}")


def cmd_impute(args: argparse.Namespace) -> int:
    summary = run_imputation(args.run_dir, split=args.split, particles=args.particles, draws=args.draws,
                             seed=args.seed, data_dir=args.data_dir, limit=args.limit)
    base = "  ".join(f"{name} {summary[name]['mse']:.4f}" for name in ("mean", "iterative") if name in summary)
    points = f" (first {summary['n_points']} points)" if summary["limit"] else ""
    print(f"{summary['split']} split{points}, {summary['n_missing']} missing entries ({summary['missing']}): "
          f"imputation mse {summary['model']['mse']:.4f} ({summary['model']['estimator']}); baselines: {base}")
    print(f"written to {Path(args.run_dir) / 'imputation.json'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    base = _config_from(args, "iwae")
    out = Path(args.out or f"runs/compare-{base.dataset}")
    try:
        compare(base, methods, out, eval_particles=args.eval_particles, eval_limit=args.eval_limit,
                train_eval_limit=args.eval_limit or 1000, force=args.force, progress=not args.quiet,
                seeds=None if args.seeds is None else range(base.seed, base.seed + args.seeds))
    except ComparisonStopped as stopped:
        print(str(stopped), file=sys.stderr)
        return stopped.exit_code
    print((out / "results.md").read_text())
    print(f"table, CSV and figures in {out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    path = Path(args.output or Path(args.run_dir) / "figures" / "samples.png")
    sample_grid(Path(args.run_dir), path, n=args.n, seed=args.seed)
    print(f"wrote {path}")
    return 0


def cmd_bdmc(args: argparse.Namespace) -> int:
    parallel, shard = evaluation_shard(args.device)  # a launched job shares the batches (--nproc)
    trained = load_trained_run(args.run_dir, data_dir=args.data_dir, device=args.device)
    with tqdm(total=args.points, unit="pt", desc="bdmc (forward and reverse AIS)",
              disable=True if args.quiet or not is_rank_zero() else None) as bar:  # None: on a terminal only
        try:
            result = bdmc(trained.model, n_points=args.points, seed=args.seed, batch_size=args.batch_size,
                          progress=bar.update, shard=shard, **estimator_settings(args, "ais"))
        finally:
            finish(parallel)
    if not is_rank_zero():
        return 0
    summary = {**result.summary(), "checkpoint": trained.checkpoint.name, "step": trained.step}
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


def cmd_list(args: argparse.Namespace) -> int:
    print("methods:")
    for name in sorted(METHODS):
        opts = ", ".join(f"{k}={v!r}" for k, v in method_options(name).items())
        needs = ", ".join(sorted(METHODS[name].requires))
        print(f"  {name:12s} {opts}\n  {'':12s} needs: {needs}")
    print("architectures (--architecture):")
    for name, text in sorted(describe_architectures().items()):
        print(f"  {name:12s} {text}")
    print("datasets (files are looked for in --data-dir, else $DEEPEM_DATA, else ~/.cache/deepem):")
    for name in sorted(DATASETS):
        print(f"  {name:15s} {DATASETS[name].summary()}")
    return 0


def _after_failure(args: argparse.Namespace) -> str:
    """What to do after a rank of an --nproc job died."""
    if args.command != "train":
        return "Run the same command again"
    run = args.resume or args.out
    if run is None:  # the default folder name needs the resolved K; resolve() is cheap
        config = resolve(_config_from(args, args.method or "iwae"))
        run = f"runs/{config.dataset}-{config.method}-k{config.particles}-s{config.seed}"
    return f"Resume from the last checkpoint with: {resume_command(run)} --nproc {args.nproc}"


def _add_nproc(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--nproc", type=_positive_int, default=1,
                   help=f"{what} in N processes on this machine (torch.distributed; gloo on CPU, NCCL on GPU). "
                        "Each gets max(1, cores // N) torch threads unless --threads is given. Under torchrun, "
                        "leave it out (or give torchrun's --nproc-per-node)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepem", description=__doc__)
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is fastest on a busy machine)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one method; a run folder holds config, metrics, checkpoints")
    p.add_argument("--method", "-m", default=None, help="default iwae")
    p.add_argument("--out", default=None, help="run folder (default runs/DATASET-METHOD-kK-sSEED)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR")
    _add_nproc(p, "data-parallel training: the global batch split over")
    p.add_argument("--seeds", type=_positive_int, default=None, metavar="N",
                   help="train N seeds (--seed, --seed + 1, ...) in one process as one vectorised computation, "
                        "seed S into OUT/seed-S, each as its single run would be (to float rounding); methods "
                        "vae, iwae, iwae-stl with the mlp architecture")
    _add_training_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="log-likelihood and encoder diagnostics of a trained run")
    p.add_argument("run_dir")
    p.add_argument("--estimator", choices=list(ESTIMATORS), default="iw")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="evaluate a fixed random subset of N points (the same for every run and seed) "
                        "(default: all points)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_positive_int, default=100)
    add_estimator_arguments(p)  # one flag per estimator setting (workflows/estimator_flags.py)
    p.add_argument("--observed", action="store_true",
                   help="a run trained with --missing: log p(x_o) of the observed part of the corrupted split "
                        "(default: log p(x) of the complete split, as IWEM's Table 3)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    _add_nproc(p, "sharded evaluation: the points' batches split over")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="train several methods under one budget and tabulate them")
    p.add_argument("--methods", required=True,
                   help="comma-separated NAME or NAME:k=K (its own particle count), e.g. vae,iwae,iwae:k=50")
    p.add_argument("--out", default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--eval-particles", type=_positive_int, default=5000)
    p.add_argument("--eval-limit", type=_positive_int, default=None,
                   help="evaluate a fixed random subset of N test (and train) points (default all)")
    p.add_argument("--seeds", type=_positive_int, default=None, metavar="N",
                   help="train every method with N seeds (--seed, --seed + 1, ...), into OUT/METHOD/seed-S, a table "
                        "row per seed; vae, iwae and iwae-stl (mlp) train their seeds as one vectorised computation")
    _add_training_arguments(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("impute", help="impute the missing entries of a run trained with --missing")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["train", "valid", "test"], default="train",
                   help="whose missing entries to impute (default train: the MIWAE/IWEM UCI setting, the "
                        "incomplete table the model was trained on)")
    p.add_argument("--particles", "-k", type=_positive_int, default=1000,
                   help="K of the self-normalised importance-sampling estimate of E[x_m | x_o] (default 1000)")
    p.add_argument("--draws", type=int, default=0,
                   help="multiple imputations per point by sampling importance resampling (default 0: none)")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="impute only the first N points of the split (default: all); the baselines are still "
                        "fitted on the whole split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_impute)

    p = sub.add_parser("sample", help="an image grid of samples from a trained model")
    p.add_argument("run_dir")
    p.add_argument("--n", type=_positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="PNG path (default RUN_DIR/figures/samples.png)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bdmc", help="bidirectional Monte Carlo bounds on simulated data: how far to trust AIS")
    p.add_argument("run_dir")
    p.add_argument("--points", type=_positive_int, default=100, help="data points simulated from the model")
    add_estimator_arguments(p, (AISSettings,))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_positive_int, default=100,
                   help="points per batch (the unit --nproc shares out; the draws depend on it)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal)")
    _add_nproc(p, "the simulated points' batches split over")
    p.set_defaults(func=cmd_bdmc)

    p = sub.add_parser("list", help="available methods (with options) and datasets")
    p.set_defaults(func=cmd_list)
    _finish(parser, sub)
    return parser


def _finish(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """What every subcommand shares: --threads after the subcommand too, and each option's default in --help."""
    threads = next(a for a in parser._actions if a.dest == "threads")
    for p in sub.choices.values():
        # SUPPRESS: without --threads here, the value given before the subcommand (or None) is kept.
        p.add_argument("--threads", type=_positive_int, default=argparse.SUPPRESS, help=threads.help)
    for p in (parser, *sub.choices.values()):
        for action in p._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or action.default == argparse.SUPPRESS:
                continue
            if "default" not in (action.help or "").lower():
                shown = ("off" if action.default is False else "none" if action.default in (None, [])
                         else ",".join(map(str, action.default)) if isinstance(action.default, list)
                         else action.default)
                shown = str(shown).replace("%", "%%")  # help strings are %-format templates
                action.help = f"{action.help or ''} (default: {shown})".strip()


@quiet_on_broken_pipe
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # no page faults for the tensors every step allocates again (training/allocator.py)
    try:
        # --- scale-out (training/distributed.py, workflows/launch.py) ---
        nproc = getattr(args, "nproc", 1)
        if nproc > 1 and getattr(args, "seeds", None) is not None:
            raise UserError("--seeds and --nproc do not combine: vectorised seeds run in one process; leave out "
                            "one of them")
        if nproc > 1 and not launched():
            return launch(main, argv, nproc, args.command, _after_failure(args))
        if launched():
            check_launched(nproc, args.command)
            if args.threads is None:  # ranks share the cores
                torch.set_num_threads(default_threads(local_world_size()))
        # --- end scale-out ---
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError, RuntimeError) as err:
        # Known failure modes carry a message meant for the user; a traceback would bury it. (Ranks > 0 of
        # an --nproc job hit the same error as rank 0, which reports it; a rank whose peer died says
        # nothing: the launcher names the rank that died.)
        if launched() and lost_peer(err):
            return EXIT_LOST_PEER
        if is_rank_zero():
            print(f"deepem {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C outside a training loop (which handles it itself, with a checkpoint): nothing half-written
        # is kept (every write is atomic), so the same command can simply be run again.
        again = {"train": "; an interrupted run resumes with --resume RUN", "compare": "; re-run the same command "
                 "to resume the comparison"}.get(args.command, "")
        print(f"deepem {args.command}: interrupted{again}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
