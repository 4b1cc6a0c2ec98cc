"""Every `deepem` subcommand and its flags, declared once without torch. A flag several subcommands share
(--seed, --device, --quiet, ...) is one `Setting` here that each of them lists; a subcommand's run,
model and estimator settings come from run.py, model.py and estimators.py. cli.py builds the parser
from `COMMANDS` alone, and each flag is made by deepem.settings.add_setting, which checks a typed value
against the declaration (type, range, choices: one line naming the setting, exit 2).

Adding a flag to a subcommand: one `Setting` here (or a field of run.py's RunSettings for `train`), named
in that subcommand's `flags`, and the line of workflows/commands.py that reads `args.NAME`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from deepem.declarations.estimators import ESTIMATOR_NAMES, ESTIMATOR_SETTINGS, PROPOSALS, AISSettings
from deepem.settings import Setting

#: data/corruption.py SPLITS
SPLITS = ("train", "valid", "test")
#: workflows/impute.py BASELINE_CHOICES: none, the column mean, or the column mean and IterativeImputer
BASELINE_NAMES = ("none", "mean", "iterative")
#: evaluation/imputation_baselines.py: IterativeImputer's bounds (cells fitted, columns regressed on all others)
ITERATIVE_MAX_CELLS = 500_000
ITERATIVE_MAX_COLUMNS = 100
ITERATIVE_NEAREST = 20

DATA_DIR_HELP = "folder with dataset files"
DATA_DIR_SHOWN = "$DEEPEM_DATA or ~/.cache/deepem"


# ---- the flags several subcommands share, each declared once ----

THREADS = Setting("threads", int | None, None, "CPU threads for torch", minimum=1,
                  shown="torch's choice; 1 is fastest on a busy machine")
RUN_DIR = Setting("run_dir", str, None, "a run folder (what `deepem train` wrote)", positional=True)
SEED = Setting("seed", int, 0, "seed of the random draws", minimum=0)
DEVICE = Setting("device", str, "cpu", "cpu, cuda or cuda:N")
BATCH_SIZE = Setting("batch_size", int, 100, "points per batch (the unit --nproc shares out; the draws depend on it)",
                     minimum=1)
DATA_DIR = Setting("data_dir", str | None, None, DATA_DIR_HELP, shown=DATA_DIR_SHOWN, metavar="DIR")
QUIET = Setting("quiet", bool, False, "no progress bars (they show on a terminal only anyway)")
FORCE = Setting("force", bool, False, "overwrite an existing run folder")
OVERWRITE = dataclasses.replace(FORCE, help="overwrite output files that exist (all are written, or none)")
PROPOSAL = Setting("proposal", str | None, None, "incomplete rows: q's input, zero-filled (MIWAE's) or completed "
                   "(miss-IWEM's)", choices=PROPOSALS, shown="the one the run's method trained")
INPUT_HEADER = Setting("header", bool | None, None, "a .csv/.tsv --input: whether its first line names the columns",
                       shown="as the training file")
NPROC = Setting("nproc", int, 1, "in N processes on this machine (torch.distributed; gloo on CPU, NCCL on GPU). "
                "Each gets max(1, cores // N) torch threads unless --threads is given. At most one per core unless "
                "--oversubscribe. Under torchrun, leave it out (or give torchrun's --nproc-per-node)", minimum=1)
OVERSUBSCRIBE = Setting("oversubscribe", bool, False, "allow --nproc above the number of cores (each process then "
                        "shares a core)")


def nproc(what: str) -> tuple[Setting, Setting]:
    """--nproc (what a subcommand splits over the processes) and --oversubscribe."""
    return dataclasses.replace(NPROC, help=f"{what} {NPROC.help}"), OVERSUBSCRIBE


# ---- each subcommand's own ----

EVALUATE_LIMIT = Setting("limit", int | None, None, "evaluate a fixed random subset of N points (the same for every "
                         "run and seed)", minimum=1, shown="all points")
#: the most multiple imputations `impute --draws` makes (multiple imputation uses 5 to 100; each draw is a
#: copy of the rows held in memory) and the most samples `sample --n` draws at once (all held in memory)
MAX_DRAWS = 1000
MAX_SAMPLES = 1_000_000
IMPUTE_LIMIT = Setting("limit", int | None, None, "without --input: impute only the first N points of the split, "
                       "the baselines too (fitted on those N points)", minimum=1, shown="all")


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, the body in workflows/commands.py that runs it, and its flags.
    run: the run settings' flags (train's, or compare's without those in `run_exclude`);
    estimators: the estimators whose settings records give flags (one per setting, a group per estimator)."""

    name: str
    help: str
    function: str
    flags: tuple[Setting, ...] = ()
    run: bool = False
    run_exclude: tuple[str, ...] = ()
    estimators: tuple[type, ...] = ()
    all_estimators: bool = False  # every registered estimator's settings, taken when the parser is built
    after: tuple[Setting, ...] = ()  # flags listed after the estimators' (the order --help shows)


TRAIN = Command(
    "train", "train one method; a run folder holds config, metrics, checkpoints", "train",
    flags=(Setting("out", str | None, None, "run folder", shown="runs/DATASET-METHOD-kK-sSEED"),
           FORCE,
           Setting("resume", str | None, None, "continue the run in RUN_DIR", metavar="RUN_DIR"),
           *nproc("data-parallel training: the global batch split over"),
           Setting("seeds", int | None, None, "train N seeds (--seed, --seed + 1, ...) in one process as one "
                   "vectorised computation, seed S into OUT/seed-S, each as its single run would be (to float "
                   "rounding); methods vae, iwae, iwae-stl with the mlp architecture", minimum=1, metavar="N")),
    run=True)

EVALUATE = Command(
    "evaluate", "log-likelihood and encoder diagnostics of a trained run", "evaluate",
    flags=(RUN_DIR,
           Setting("estimator", str, "iw", "iw: importance-weighted bound of log p(x); iw-observed: of log p(x_o) "
                   "(as --observed); ais: annealed importance sampling (for an implicit encoder, with --ais-initial "
                   "prior); or one a plug-in registers (DEEPEM_PLUGINS)", choices=ESTIMATOR_NAMES),
           Setting("split", str, "test", "the run's split to evaluate", choices=SPLITS),
           Setting("input", str | None, None, "evaluate the rows of FILE (a .csv/.tsv/.npy/.npz file with the run's "
                   "columns; rows with empty cells: log p(x_o)) instead of a split; the training data are not read",
                   metavar="FILE"),
           EVALUATE_LIMIT, SEED, BATCH_SIZE),
    all_estimators=True,
    after=(Setting("observed", bool, False, "a run trained with --missing: log p(x_o) of the observed part of the "
                   "corrupted split", shown="off: log p(x) of the complete split, as IWEM's Table 3"),
           DATA_DIR, DEVICE, QUIET, *nproc("sharded evaluation: the points' batches split over")))

COMPARE = Command(
    "compare", "train several methods under one budget and tabulate them", "compare_methods",
    flags=(Setting("methods", str, None, "comma-separated NAME or NAME:KEY=VALUE:... (that method's own options, K "
                   "among them), e.g. vae,iwae,iwae:particles=50 (k is short for particles)", required=True),
           Setting("out", str | None, None, "folder of the comparison", shown="runs/compare-DATASET"),
           FORCE,
           Setting("eval_estimator", str, "iw", "the estimator every run is evaluated with (its defaults, K from "
                   "--eval-particles)", choices=ESTIMATOR_NAMES),
           Setting("eval_particles", int, 5000, "K of the evaluation, for an --eval-estimator with particles",
                   minimum=1),
           Setting("eval_limit", int | None, None, "evaluate a fixed random subset of N test (and train) points",
                   minimum=1, shown="all"),
           Setting("seeds", int | None, None, "train every method with N seeds (--seed, --seed + 1, ...), into "
                   "OUT/METHOD/seed-S, a table row per seed; vae, iwae and iwae-stl (mlp) train their seeds as one "
                   "vectorised computation", minimum=1, metavar="N")),
    run=True, run_exclude=("method",))

IMPUTE = Command(
    "impute", "fill missing entries: of a file (--input, --output), or of a split of the run's own incomplete data",
    "impute",
    flags=(RUN_DIR,
           Setting("input", str | None, None, "a .csv/.tsv/.npy/.npz file with the run's columns whose missing cells "
                   "to fill (the training file or new rows); written in the same format to --output", metavar="FILE",
                   shown="the run's own --split"),
           Setting("output", str | None, None, "where the filled --input goes (same format)", metavar="FILE"),
           Setting("split", str, "train", "without --input: whose missing entries to impute (train: the MIWAE/IWEM "
                   "UCI setting, the incomplete table the model was trained on)", choices=SPLITS),
           Setting("particles", int, 1000, "K of the self-normalised importance-sampling estimate of E[x_m | x_o]",
                   minimum=1, short="-k"),
           Setting("draws", int, 0, "multiple imputations per point by sampling importance resampling: with --input, "
                   "M files OUTPUT_1 .. OUTPUT_M, or with --long one table with an imputation column (0: none)",
                   minimum=0, maximum=MAX_DRAWS),
           Setting("long", bool, False, "--draws with --input: one long table OUTPUT_draws"),
           PROPOSAL, INPUT_HEADER, OVERWRITE,
           Setting("baselines", str, "iterative", "model-free baselines on the same masks: none, mean (column mean), "
                   f"or iterative (column mean and scikit-learn's IterativeImputer; above {ITERATIVE_MAX_CELLS} cells "
                   f"it is fitted on a random subsample of rows, above {ITERATIVE_MAX_COLUMNS} columns each column on "
                   f"its nearest {ITERATIVE_NEAREST}, and the summary says so)", choices=BASELINE_NAMES),
           IMPUTE_LIMIT, SEED, DATA_DIR, QUIET))

SCORE = Command(
    "score", "each row's log-likelihood (log p(x_o) for incomplete rows) under a run's model: density estimation and "
    "outlier scores on new data", "score",
    flags=(RUN_DIR,
           Setting("input", str, None, "a .csv/.tsv/.npy/.npz file with the run's columns", metavar="FILE",
                   required=True),
           Setting("output", str, None, "a CSV: row, n_observed, log_likelihood (on the file's own scale); "
                   "OUTPUT.json beside it records the estimator, K and seed", metavar="FILE", required=True),
           Setting("particles", int, 1000, "K of the IWAE bound", minimum=1, short="-k"),
           PROPOSAL, INPUT_HEADER, OVERWRITE, SEED, QUIET))

SAMPLE = Command(
    "sample", "samples from a trained model: an image grid, or for a table rows drawn from p(x) written as a table",
    "sample",
    flags=(RUN_DIR,
           Setting("n", int, 64, "samples (images in the grid, or rows)", minimum=1, maximum=MAX_SAMPLES),
           SEED,
           Setting("output", str | None, None, "PNG path; for a table a .csv or .tsv path (default "
                   "RUN_DIR/samples.csv)", shown="RUN_DIR/figures/samples.png"),
           OVERWRITE))

BDMC = Command(
    "bdmc", "bidirectional Monte Carlo bounds on simulated data: how far to trust AIS", "bdmc_bounds",
    flags=(RUN_DIR,
           Setting("points", int, 100, "data points simulated from the model", minimum=1)),
    estimators=(AISSettings,),
    after=(SEED, BATCH_SIZE, DATA_DIR, DEVICE, QUIET, *nproc("the simulated points' batches split over")))

LIST = Command("list", "available methods (with options, and what each does with the missing-data mask), "
                       "architectures and datasets", "list_all")

#: the subcommands, in the order --help lists them
COMMANDS: tuple[Command, ...] = (TRAIN, EVALUATE, COMPARE, IMPUTE, SCORE, SAMPLE, BDMC, LIST)


def command_flags(command: Command) -> tuple[Setting, ...]:
    """The subcommand's own flags (the run and estimator settings aside)."""
    return (*command.flags, *command.after)


def shared_settings() -> dict[str, list[str]]:
    """The flags whose one declaration more than one subcommand lists: flag -> those subcommands."""
    counts: dict[int, list[str]] = {}
    for command in COMMANDS:
        for s in command_flags(command):
            counts.setdefault(id(s), []).append(command.name)
    return {s.option: counts[id(s)] for c in COMMANDS for s in command_flags(c) if len(counts[id(s)]) > 1}


def command_estimators(command: Command) -> tuple[type, ...]:
    """The estimators' settings records that give the subcommand flags: with all_estimators, every one
    registered when the parser is built (a plug-in module, DEEPEM_PLUGINS, may have added one)."""
    return tuple(ESTIMATOR_SETTINGS.values()) if command.all_estimators else command.estimators
