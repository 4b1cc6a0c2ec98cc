"""The `deepem` command: train (one method, a run folder), evaluate (log-likelihood of a run), compare (several
methods, one table), impute (missing entries of a file, or of a run's own incomplete data), score (per-row
log-likelihood of a file), sample (image grid), bdmc (how
far to trust AIS), list (methods, architectures and datasets).

This module parses arguments and hands them to deepem/dispatch.py, which runs the subcommand (its body is in
workflows/commands.py). The parser is built from the settings' declarations (deepem/declarations), which
import without torch: `--help` and argument errors answer before torch, scikit-learn or matplotlib load."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from deepem.declarations.estimators import ESTIMATOR_NAMES, ESTIMATOR_SETTINGS, PROPOSALS, AISSettings
from deepem.declarations.flags import (
    DATA_DIR_HELP,
    add_estimator_arguments,
    add_nproc,
    add_run_arguments,
    check_nproc,
    finish_parser,
)
from deepem.errors import UserError, quiet_on_broken_pipe
from deepem.settings import positive_int

#: the one module imported after parsing, by name (importlib): it runs a subcommand, with torch and the
#: rest of the library (tests/test_layering.py allows exactly this deferred import, and says why)
DISPATCH = "deepem.dispatch"
EXIT_INTERRUPTED = 130  # the shell's code for a SIGINT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepem", description=__doc__)
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is fastest on a busy machine)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one method; a run folder holds config, metrics, checkpoints")
    p.add_argument("--out", default=None, help="run folder (default runs/DATASET-METHOD-kK-sSEED)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR")
    add_nproc(p, "data-parallel training: the global batch split over")
    p.add_argument("--seeds", type=positive_int, default=None, metavar="N",
                   help="train N seeds (--seed, --seed + 1, ...) in one process as one vectorised computation, "
                        "seed S into OUT/seed-S, each as its single run would be (to float rounding); methods "
                        "vae, iwae, iwae-stl with the mlp architecture")
    add_run_arguments(p)
    p.set_defaults(command_function="train")

    p = sub.add_parser("evaluate", help="log-likelihood and encoder diagnostics of a trained run")
    p.add_argument("run_dir")
    p.add_argument("--estimator", choices=list(ESTIMATOR_NAMES), default="iw",
                   help="iw: importance-weighted bound of log p(x); iw-observed: of log p(x_o) (as --observed); "
                        "ais: annealed importance sampling (for an implicit encoder, with --ais-initial prior)")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="evaluate a fixed random subset of N points (the same for every run and seed) "
                        "(default: all points)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=100)
    add_estimator_arguments(p, tuple(ESTIMATOR_SETTINGS.values()))  # one flag per estimator setting
    p.add_argument("--observed", action="store_true",
                   help="a run trained with --missing: log p(x_o) of the observed part of the corrupted split "
                        "(default: log p(x) of the complete split, as IWEM's Table 3)")
    p.add_argument("--input", default=None, metavar="FILE",
                   help="evaluate the rows of FILE (the run's columns; rows with empty cells: log p(x_o)) instead "
                        "of a split; the training data are not read")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    add_nproc(p, "sharded evaluation: the points' batches split over")
    p.set_defaults(command_function="evaluate")

    p = sub.add_parser("compare", help="train several methods under one budget and tabulate them")
    p.add_argument("--methods", required=True,
                   help="comma-separated NAME or NAME:KEY=VALUE:... (that method's own options, K among them), "
                        "e.g. vae,iwae,iwae:particles=50 (k is short for particles)")
    p.add_argument("--out", default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--eval-particles", type=positive_int, default=5000)
    p.add_argument("--eval-limit", type=positive_int, default=None,
                   help="evaluate a fixed random subset of N test (and train) points (default all)")
    p.add_argument("--seeds", type=positive_int, default=None, metavar="N",
                   help="train every method with N seeds (--seed, --seed + 1, ...), into OUT/METHOD/seed-S, a table "
                        "row per seed; vae, iwae and iwae-stl (mlp) train their seeds as one vectorised computation")
    add_run_arguments(p, exclude=("method",))
    p.set_defaults(command_function="compare_methods")

    p = sub.add_parser("impute", help="fill missing entries: of a file (--input, --output), or of a split of the "
                                      "run's own incomplete data")
    p.add_argument("run_dir")
    p.add_argument("--input", default=None, metavar="FILE",
                   help="a .csv/.tsv/.npy/.npz file with the run's columns whose missing cells to fill (the "
                        "training file or new rows); written in the same format to --output (default: the "
                        "run's own --split)")
    p.add_argument("--output", default=None, metavar="FILE", help="where the filled --input goes (same format)")
    p.add_argument("--split", choices=["train", "valid", "test"], default="train",
                   help="without --input: whose missing entries to impute (default train: the MIWAE/IWEM UCI "
                        "setting, the incomplete table the model was trained on)")
    p.add_argument("--particles", "-k", type=positive_int, default=1000,
                   help="K of the self-normalised importance-sampling estimate of E[x_m | x_o] (default 1000)")
    p.add_argument("--draws", type=int, default=0,
                   help="multiple imputations per point by sampling importance resampling: with --input, M "
                        "files OUTPUT_1 .. OUTPUT_M, or with --long one table with an imputation column "
                        "(default 0: none)")
    p.add_argument("--long", action="store_true", help="--draws with --input: one long table OUTPUT_draws")
    p.add_argument("--proposal", choices=list(PROPOSALS), default=None,
                   help="q's input: zero-filled (MIWAE's) or completed (miss-IWEM's) "
                        "(default: the one the run's method trained)")
    p.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                   help="a .csv/.tsv --input: whether its first line names the columns (default: as the "
                        "training file)")
    # the choices of workflows/impute.py BASELINE_CHOICES and the bounds of evaluation/imputation_baselines.py,
    # written out here so that the parser imports no torch (tests/cli/test_own_data_cli.py checks they agree)
    p.add_argument("--baselines", choices=["none", "mean", "iterative"], default="iterative",
                   help="model-free baselines on the same masks: none, mean (column mean), or iterative (column "
                        "mean and scikit-learn's IterativeImputer; above 500000 cells it is fitted on a random "
                        "subsample of rows, above 100 columns each column on its nearest 20, and the summary "
                        "says so)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="without --input: impute only the first N points of the split, the baselines too "
                        "(fitted on those N points) (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal)")
    p.set_defaults(command_function="impute")

    p = sub.add_parser("score", help="each row's log-likelihood (log p(x_o) for incomplete rows) under a run's "
                                     "model: density estimation and outlier scores on new data")
    p.add_argument("run_dir")
    p.add_argument("--input", required=True, metavar="FILE", help="a .csv/.tsv/.npy/.npz file with the run's columns")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="a CSV: row, n_observed, log_likelihood (on the file's own scale); OUTPUT.json beside it "
                        "records the estimator, K and seed")
    p.add_argument("--particles", "-k", type=positive_int, default=1000, help="K of the IWAE bound (default 1000)")
    p.add_argument("--proposal", choices=list(PROPOSALS), default=None,
                   help="incomplete rows: q's input, zero-filled or completed (default: the one the run's "
                        "method trained)")
    p.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                   help="a .csv/.tsv --input: whether its first line names the columns (default: as the "
                        "training file)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal)")
    p.set_defaults(command_function="score")

    p = sub.add_parser("sample", help="samples from a trained model: an image grid, or for a table rows drawn "
                                      "from p(x) written as a table")
    p.add_argument("run_dir")
    p.add_argument("--n", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="PNG path (default RUN_DIR/figures/samples.png); for a table a "
                                                  ".csv or .tsv path (default RUN_DIR/samples.csv)")
    p.set_defaults(command_function="sample")

    p = sub.add_parser("bdmc", help="bidirectional Monte Carlo bounds on simulated data: how far to trust AIS")
    p.add_argument("run_dir")
    p.add_argument("--points", type=positive_int, default=100, help="data points simulated from the model")
    add_estimator_arguments(p, (AISSettings,))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=100,
                   help="points per batch (the unit --nproc shares out; the draws depend on it)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal)")
    add_nproc(p, "the simulated points' batches split over")
    p.set_defaults(command_function="bdmc_bounds")

    p = sub.add_parser("list", help="available methods (with options, and what each does with the missing-data "
                                    "mask), architectures and datasets")
    p.set_defaults(command_function="list_all")
    finish_parser(parser, sub)
    return parser


@quiet_on_broken_pipe
def main(argv: list[str] | None = None) -> int:
    own_command_line = argv is None  # the process's own command (not a test's, nor a rank's call)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "nproc", 1) > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:  # (not in a launched job)
        try:  # before any process starts, and before torch is imported
            check_nproc(args, os.cpu_count() or 1)
        except UserError as err:
            print(f"deepem {args.command}: error: {err}", file=sys.stderr)
            return 2
    # Only now the library: torch and what the subcommand needs (deepem/dispatch.py).
    try:
        dispatch = importlib.import_module(DISPATCH)
    except KeyboardInterrupt:  # Ctrl-C while the library loads: nothing has started
        print(f"deepem {args.command}: interrupted", file=sys.stderr)
        dispatch = None
    code = EXIT_INTERRUPTED if dispatch is None else dispatch.run(args, argv, main)
    if own_command_line and (code == EXIT_INTERRUPTED or args.command == "list"):
        # Ctrl-C (everything written is whole: atomic writes; the message is out) or `list` (it writes
        # nothing): the interpreter's teardown of torch alone takes seconds on a busy machine, and there is
        # nothing left to finish, so the process ends now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
