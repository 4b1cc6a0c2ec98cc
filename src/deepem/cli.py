"""The `deepem` command: train (one method, a run folder), evaluate (log-likelihood of a run), compare (several
methods, one table), sample (image grid), bdmc (how far to trust AIS), list (methods and datasets)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from deepem.errors import UserError, quiet_on_broken_pipe
from deepem.evaluation.ais import DEFAULT_CHAINS, DEFAULT_LEAPFROG_STEPS, DEFAULT_TEMPERATURES
from deepem.models.lvm import ModelConfig
from deepem.training.config import NAN_POLICIES, RESUME_OVERRIDABLE, TrainConfig
from deepem.training.schedules import SCHEDULES

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
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", default="digits", help="dataset name (see `deepem list`); default digits")
    g.add_argument("--data-dir", default=None,
                   help="folder with dataset files (default: $DEEPEM_DATA or ~/.cache/deepem)")
    g.add_argument("--latent-dim", type=_positive_int, default=50)
    g.add_argument("--hidden", type=_widths, default=[200, 200], help="MLP widths, e.g. 200,200")
    g.add_argument("--activation", default="tanh")
    g.add_argument("--likelihood", default=None, choices=["bernoulli", "gaussian"],
                   help="default: the dataset's (bernoulli for binary images)")
    g.add_argument("--train-limit", type=_positive_int, default=None, help="train on the first N points only")
    g = p.add_argument_group("optimisation")
    g.add_argument("--particles", "-k", type=_positive_int, default=5, help="K, particles per data point")
    g.add_argument("--epochs", type=_positive_int, default=10)
    g.add_argument("--batch-size", type=_positive_int, default=20)
    g.add_argument("--lr", type=_positive_float, default=1e-3, help="base learning rate (Adam)")
    g.add_argument("--adam-eps", type=_positive_float, default=1e-4)
    g.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="'burda': lr * 10^(-i/7) for 3^i epochs, i = 0..7 (Burda et al. 2015)")
    g.add_argument("--option", "-o", dest="options", action="append", type=_parse_option, default=[],
                   metavar="KEY=VALUE", help="a method option (repeatable); `deepem list` shows them")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("run")
    g.add_argument("--valid-every", type=int, default=1, help="epochs between validation bounds (0: never)")
    g.add_argument("--valid-particles", type=_positive_int, default=100)
    g.add_argument("--checkpoint-every", type=_positive_int, default=1, help="epochs between checkpoints")
    g.add_argument("--checkpoint-every-steps", type=int, default=0, help="also every N steps (0: off)")
    g.add_argument("--keep-checkpoints", type=_positive_int, default=3)
    g.add_argument("--nan-policy", choices=NAN_POLICIES, default="stop",
                   help="on a NaN/inf loss, log-weight or gradient: stop with a diagnosis, skip the step, "
                        "or roll back to the last checkpoint with half the learning rate")
    g.add_argument("--max-rollbacks", type=int, default=5)
    g.add_argument("--max-consecutive-skips", type=int, default=20)
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _config_from(args: argparse.Namespace, method: str) -> TrainConfig:
    return TrainConfig(
        dataset=args.dataset, method=method, particles=args.particles, method_options=dict(args.options),
        model=ModelConfig(latent_dim=args.latent_dim, hidden=args.hidden, activation=args.activation,
                          likelihood=args.likelihood),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        adam_eps=args.adam_eps, seed=args.seed, data_dir=args.data_dir, train_limit=args.train_limit,
        valid_every=args.valid_every, valid_particles=args.valid_particles,
        checkpoint_every=args.checkpoint_every, checkpoint_every_steps=args.checkpoint_every_steps,
        keep_checkpoints=args.keep_checkpoints, nan_policy=args.nan_policy, max_rollbacks=args.max_rollbacks,
        max_consecutive_skips=args.max_consecutive_skips, device=args.device, dtype=args.dtype,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from deepem.training.session import run_training

    if args.resume:
        # Only the settings typed on this command line change the resumed run; the rest comes from it.
        defaults = vars(build_parser().parse_args(["train"]))
        overrides = {f: getattr(args, f) for f in RESUME_OVERRIDABLE
                     if hasattr(args, f) and getattr(args, f) != defaults.get(f)}
        return run_training(None, Path(args.resume), resume=True, overrides=overrides, progress=not args.quiet)
    config = _config_from(args, args.method)
    out = Path(args.out or f"runs/{config.dataset}-{config.method}-k{config.particles}-s{config.seed}")
    return run_training(config, out, force=args.force, progress=not args.quiet)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from deepem.evaluation.evaluate import evaluate_run

    ais = {}
    if args.estimator == "ais":
        ais = {k: v for k, v in (("temperatures", args.temperatures), ("chains", args.chains),
                                 ("leapfrog_steps", args.leapfrog_steps), ("initial", args.ais_initial))
               if v is not None}
    record = evaluate_run(args.run_dir, estimator=args.estimator, particles=args.particles, split=args.split,
                          limit=args.limit, seed=args.seed, batch_size=args.batch_size, data_dir=args.data_dir,
                          device=args.device, progress=not args.quiet, **ais)
    print(f"{record['split']} log-likelihood ({record['estimator']}, {record['n_points']} points): "
          f"{record['log_likelihood']:.3f} ± {record['stderr']:.3f} nats")
    print(f"active units: {record['active_units']}, KL(q(z|x) || p(z)): {record['kl_to_prior']:.3f} nats, "
          f"{record['points_per_sec']:.1f} points/s")
    print(f"written to {Path(args.run_dir) / 'evaluation.json'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from deepem.report.compare import compare

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    base = _config_from(args, "iwae")
    out = Path(args.out or f"runs/compare-{base.dataset}")
    compare(base, methods, out, eval_particles=args.eval_particles, eval_limit=args.eval_limit,
            train_eval_limit=args.eval_limit or 1000, force=args.force, progress=not args.quiet)
    print((out / "results.md").read_text())
    print(f"table, CSV and figures in {out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from deepem.report.compare import sample_grid

    path = Path(args.output or Path(args.run_dir) / "figures" / "samples.png")
    sample_grid(Path(args.run_dir), path, n=args.n, seed=args.seed)
    print(f"wrote {path}")
    return 0


def cmd_bdmc(args: argparse.Namespace) -> int:
    from deepem.evaluation.bdmc import bdmc
    from deepem.training.files import atomic_write_json
    from deepem.training.loading import load_trained_run

    trained = load_trained_run(args.run_dir, data_dir=args.data_dir, device=args.device)
    result = bdmc(trained.model, n_points=args.points, chains=args.chains, temperatures=args.temperatures,
                  leapfrog_steps=args.leapfrog_steps, seed=args.seed)
    summary = {**result.summary(), "checkpoint": trained.checkpoint.name, "step": trained.step}
    atomic_write_json(Path(args.run_dir) / "bdmc.json", summary, checksum=True)
    print(f"BDMC on {args.points} points simulated from the model: lower {float(result.lower.mean()):.3f}, "
          f"upper {float(result.upper.mean()):.3f}, gap {result.gap:.3f} nats "
          f"(AIS estimates at these settings are off by at most about the gap)")
    print(f"written to {Path(args.run_dir) / 'bdmc.json'}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from deepem.data import DATASETS
    from deepem.methods.registry import METHODS, method_options

    print("methods:")
    for name in sorted(METHODS):
        opts = ", ".join(f"{k}={v!r}" for k, v in method_options(name).items())
        print(f"  {name:12s} {opts}")
    print("datasets (files are looked for in --data-dir, else $DEEPEM_DATA, else ~/.cache/deepem):")
    for name in sorted(DATASETS):
        print(f"  {name:15s} {DATASETS[name].summary()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepem", description=__doc__)
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is fastest on a busy machine)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one method; a run folder holds config, metrics, checkpoints")
    p.add_argument("--method", "-m", default="iwae")
    p.add_argument("--out", default=None, help="run folder (default runs/DATASET-METHOD-kK-sSEED)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR")
    _add_training_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="log-likelihood and encoder diagnostics of a trained run")
    p.add_argument("run_dir")
    p.add_argument("--estimator", choices=["iw", "ais"], default="iw")
    p.add_argument("--particles", "-k", type=_positive_int, default=5000, help="K of the IW estimate")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="evaluate a fixed random subset of N points (the same for every run and seed) "
                        "(default: all points)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_positive_int, default=100)
    p.add_argument("--temperatures", type=_positive_int, default=None,
                   help=f"AIS: number of temperatures (default: {DEFAULT_TEMPERATURES})")
    p.add_argument("--chains", type=_positive_int, default=None,
                   help=f"AIS: chains per data point (default: {DEFAULT_CHAINS})")
    p.add_argument("--leapfrog-steps", type=_positive_int, default=None,
                   help=f"AIS: leapfrog steps per HMC move (default: {DEFAULT_LEAPFROG_STEPS})")
    p.add_argument("--ais-initial", choices=["prior", "encoder"], default=None,
                   help="AIS: start the chains at p(z) (Wu et al. 2016) or at q(z|x) (default: prior)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="train several methods under one budget and tabulate them")
    p.add_argument("--methods", required=True,
                   help="comma-separated NAME or NAME:k=K (its own particle count), e.g. vae,iwae,iwae:k=50")
    p.add_argument("--out", default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--eval-particles", type=_positive_int, default=5000)
    p.add_argument("--eval-limit", type=_positive_int, default=None,
                   help="evaluate a fixed random subset of N test (and train) points (default all)")
    _add_training_arguments(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sample", help="an image grid of samples from a trained model")
    p.add_argument("run_dir")
    p.add_argument("--n", type=_positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="PNG path (default RUN_DIR/figures/samples.png)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bdmc", help="bidirectional Monte Carlo bounds on simulated data: how far to trust AIS")
    p.add_argument("run_dir")
    p.add_argument("--points", type=_positive_int, default=100, help="data points simulated from the model")
    p.add_argument("--temperatures", type=_positive_int, default=500)
    p.add_argument("--chains", type=_positive_int, default=16)
    p.add_argument("--leapfrog-steps", type=_positive_int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--device", default="cpu")
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
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError, RuntimeError) as err:
        # Known failure modes carry a message meant for the user; a traceback would bury it.
        print(f"deepem {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
