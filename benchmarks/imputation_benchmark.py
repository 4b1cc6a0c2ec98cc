"""Is deepem's DeepImputer worth using over scikit-learn's imputers? A benchmark an applied statistician
would run: several tables, three missingness mechanisms, two rates, paired comparisons over seeds.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/imputation_benchmark.py --data-dir DATA_DIR
    python benchmarks/imputation_benchmark.py --quick --out /tmp/quick     # seconds: the test's run

Protocol (one "cell" = table x mechanism x rate x seed; every imputer of a cell sees the same mask):
- tables: the four UCI tables of DATA_DIR/uci (features only; the last column is the label),
  scikit-learn's bundled diabetes and wine (breast cancer is the UCI breast-cancer table: the same
  569 x 30 features; california housing is not bundled, it is used only when already in scikit-learn's
  data home), and "mnist": 1000 binarised MNIST test rows (DATA_DIR/binarized_mnist.npz), pixels that
  vary within them, no label (so no downstream score) and scored by the error rate on missing pixels.
- masks (deepem.data.corruption): mcar (every cell with probability p), mar (the column of largest sd
  always observed; every other column missing with probability logistic in it, mean p per column),
  mnar (self-masking: logistic in the cell's own standardised value, mean p per column).
- imputers: `deepem` is DeepImputer with its defaults (random_state = seed), `deepem-miss-iwem` the same
  with method="miss-iwem"; baselines SimpleImputer(mean), KNNImputer(5 neighbours),
  IterativeImputer(BayesianRidge, max_iter=10) and IterativeImputer(ExtraTreesRegressor(10 trees),
  max_iter=10): scikit-learn's gallery settings, not tuned here. IterativeImputer is skipped on the
  image rows (hundreds of columns: one regression per column and round).
- metrics: RMSE over the masked cells in sd units of the complete table's columns (imputer fitted on the
  incomplete table, transductively; binary tables: error rate of the imputation rounded at 0.5);
  downstream: K-fold cross-validated random forest (accuracy or R2 on the label) with the imputer
  inside the Pipeline, so each fold's imputer sees only its training rows; coverage and width of 90 %
  intervals on the masked cells from --draws multiple imputations (DeepImputer.sample, and
  IterativeImputer(BayesianRidge, sample_posterior=True) refitted with --draws seeds: the fair
  comparison); seconds of fit + transform.

Results: OUT/imputation_benchmark.json (every row, the command, the machine's load) and .md (the
report of imputation_report.py: paired differences deepem - best baseline, 95 % t-intervals over seeds).
Output files are not overwritten without --force; --resume keeps their rows and runs only what is missing.
Parts (processes given different --tables and --out folders, to use several cores) are joined by
`--merge PART_DIR [PART_DIR ...] --out DIR`: their rows, tables and commands in one pair of result files."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (makes IterativeImputer importable)
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.linear_model import BayesianRidge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from deepem.data.corruption import mar, mcar, mnar_self
from deepem.models.config import STOPPING_DEFAULTS, TABLE_DEFAULTS
from deepem.sklearn import DeepImputer

sys.path.insert(0, str(Path(__file__).parent))
from imputation_report import RESULTS_NAME, write  # noqa: E402

UCI = {"banknote": ("banknote_authentication.csv", "classification"),
       "breast-cancer": ("breast_cancer_wdbc.csv", "classification"),
       "wine-red": ("winequality_red.csv", "regression"), "wine-white": ("winequality_white.csv", "regression")}
BUNDLED = {"diabetes": "regression", "wine": "classification", "california": "regression"}
TABLES = (*UCI, "diabetes", "wine", "california", "mnist")
#: the tables the table defaults were chosen on (benchmarks/table_defaults_sweep.py): never in a reported plan
SWEEP_TABLES = ("wine-white", "iris")
MASKS: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "mcar": lambda x, p, gen: mcar(tuple(x.shape), p, gen), "mar": mar, "mnar": mnar_self}
DEEPEM = ("deepem", "deepem-miss-iwem")
BASELINES = ("mean", "knn", "iterative-br", "iterative-et")
#: imputers that give draws for interval coverage: deepem's sample, BayesianRidge's posterior
SAMPLERS = (*DEEPEM, "iterative-br")
CALIFORNIA_ROWS = 2000
MNIST_ROWS = 1000
QUICK = {"tables": "wine", "masks": "mcar,mnar", "rates": "0.2", "seeds": "0,1", "imputers": "deepem,mean,knn",
         "folds": 2, "forest_trees": 10}
#: DeepImputer settings of --quick only (set when the estimator has them): a tiny fit for the test
QUICK_DEEPEM = {"epochs": 2, "eval_particles": 50}


class BenchmarkInputError(ValueError):
    """Bad flags or missing data: one line, exit 2."""


@dataclass
class Table:
    x: np.ndarray  # complete features, float64
    y: np.ndarray | None  # label, None: no downstream score
    task: str  # "classification", "regression" or "" (no label)
    binary: bool  # 0/1 cells: error rate instead of RMSE, no intervals
    note: str = ""


def load_table(name: str, data_dir: Path) -> Table:
    if name in UCI:
        path = data_dir / "uci" / UCI[name][0]
        if not path.is_file():
            raise BenchmarkInputError(f"{path} not found; give --data-dir the folder that holds uci/")
        raw = np.loadtxt(path, delimiter=",", skiprows=1)
        return Table(raw[:, :-1], raw[:, -1], UCI[name][1], False)
    if name == "mnist":
        path = data_dir / "binarized_mnist.npz"
        if not path.is_file():
            raise BenchmarkInputError(f"{path} not found; give --data-dir the folder that holds it")
        pixels = np.unpackbits(np.load(path)["test"][:MNIST_ROWS], axis=1).astype(np.float64)
        varying = pixels.std(axis=0) > 0
        return Table(pixels[:, varying], None, "", True,
                     f"first {MNIST_ROWS} test images, the {int(varying.sum())} pixels that vary within them")
    from sklearn import datasets
    if name == "diabetes":
        bunch = datasets.load_diabetes()
    elif name == "wine":
        bunch = datasets.load_wine()
    elif name == "california":
        try:
            bunch = datasets.fetch_california_housing(download_if_missing=False)
        except OSError:
            raise BenchmarkInputError("california housing is not bundled with scikit-learn and not in its data "
                                      "home; this benchmark downloads nothing: leave it out of --tables") from None
        rows = np.random.default_rng(0).choice(len(bunch.target), CALIFORNIA_ROWS, replace=False)
        return Table(bunch.data[rows], bunch.target[rows], "regression", False,
                     f"{CALIFORNIA_ROWS} rows drawn with seed 0")
    else:
        raise BenchmarkInputError(f"unknown table {name!r}; choose from {', '.join(TABLES)}")
    return Table(np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target), BUNDLED[name], False)


def make_imputer(name: str, seed: int, quick: bool) -> Any:
    """A fresh imputer; the budgets are scikit-learn's gallery settings and DeepImputer's defaults."""
    if name in DEEPEM:
        imputer = DeepImputer(random_state=seed, **({"method": "miss-iwem"} if name == "deepem-miss-iwem" else {}))
        if quick:
            imputer.set_params(**{k: v for k, v in QUICK_DEEPEM.items() if k in imputer.get_params()})
        return imputer
    if name == "mean":
        return SimpleImputer(strategy="mean", keep_empty_features=True)
    if name == "knn":
        return KNNImputer(n_neighbors=5, keep_empty_features=True)
    if name == "iterative-br":
        return IterativeImputer(BayesianRidge(), max_iter=10, random_state=seed, keep_empty_features=True)
    if name == "iterative-et":
        return IterativeImputer(ExtraTreesRegressor(n_estimators=10, random_state=seed), max_iter=10,
                                random_state=seed, keep_empty_features=True)
    raise BenchmarkInputError(f"unknown imputer {name!r}; choose from {', '.join(DEEPEM + BASELINES)}")


def sd_units_rmse(filled: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Root mean square error over the missing cells (mask False), each column divided by its sd in the
    complete table (population sd; a constant column counts in raw units)."""
    sd = truth.std(axis=0)
    scaled = (filled - truth) / np.where(sd > 0, sd, 1.0)
    return float(np.sqrt(np.mean(scaled[~mask] ** 2)))


def interval_coverage(draws: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Coverage and mean width (sd units) of the 90 % intervals of the missing cells: from the k-th
    smallest to the k-th largest of n draws with (n + 1 - 2k) / (n + 1) = 0.9, which covers exactly 90 %
    of the time for a value exchangeable with the draws (n = 19: min to max; 39: 2nd to 2nd largest)."""
    n = draws.shape[0]
    k = (n + 1) // 20
    ordered = np.sort(draws[:, ~mask], axis=0)
    low, high = ordered[k - 1], ordered[n - k]
    values = truth[~mask]
    sd = np.broadcast_to(truth.std(axis=0), truth.shape)[~mask]
    covered = (low <= values) & (values <= high)
    return float(covered.mean()), float(np.mean((high - low) / np.where(sd > 0, sd, 1.0)))


def posterior_draws(seed: int, x_nan: np.ndarray, n_draws: int) -> np.ndarray:
    """(n_draws, N, D) multiple imputations by IterativeImputer(BayesianRidge, sample_posterior=True),
    one fit per draw (scikit-learn's way of multiple imputation)."""
    return np.stack([IterativeImputer(BayesianRidge(), max_iter=10, sample_posterior=True, keep_empty_features=True,
                                      random_state=seed * 1000 + d).fit_transform(x_nan) for d in range(n_draws)])


def downstream(name: str, seed: int, table: Table, x_nan: np.ndarray, a: argparse.Namespace) -> float:
    """Mean cross-validated score of imputer + random forest (accuracy or R2): the imputer is fitted
    inside each training fold."""
    classify = table.task == "classification"
    forest = (RandomForestClassifier if classify else RandomForestRegressor)(n_estimators=a.forest_trees,
                                                                             random_state=seed)
    folds = (StratifiedKFold if classify else KFold)(n_splits=a.folds, shuffle=True, random_state=seed)
    pipeline = Pipeline([("impute", make_imputer(name, seed, a.quick)), ("forest", forest)])
    scores = cross_val_score(pipeline, x_nan, table.y, cv=folds, scoring="accuracy" if classify else "r2")
    return float(np.mean(scores))


def run_cell(table: Table, mask: np.ndarray, name: str, seed: int, a: argparse.Namespace) -> dict[str, Any]:
    x_nan = np.where(mask, table.x, np.nan)
    start = time.perf_counter()
    imputer = make_imputer(name, seed, a.quick).fit(x_nan)
    filled = np.asarray(imputer.transform(x_nan))
    row: dict[str, Any] = {"fit_transform_s": round(time.perf_counter() - start, 3)}
    if table.binary:
        row["error_rate"] = float(np.mean((filled[~mask] >= 0.5) != (table.x[~mask] >= 0.5)))
    else:
        row["rmse_sd"] = sd_units_rmse(filled, table.x, mask)
    if table.y is not None and not a.no_downstream:
        start = time.perf_counter()
        row["downstream"] = downstream(name, seed, table, x_nan, a)
        row["downstream_s"] = round(time.perf_counter() - start, 3)
    if name in SAMPLERS and not table.binary and a.draws:
        start = time.perf_counter()
        # deepem: draws of the model fitted above; IterativeImputer: a fit per draw
        draws = imputer.sample(x_nan, a.draws) if name in DEEPEM else posterior_draws(seed, x_nan, a.draws)
        row["coverage90"], row["width90_sd"] = interval_coverage(np.asarray(draws), table.x, mask)
        row["draws_s"] = round(time.perf_counter() - start, 3)
    return row


def skip_reason(table: Table, name: str) -> str | None:
    if table.binary and name.startswith("iterative"):
        return "IterativeImputer not run on image rows (one regression per pixel and round)"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="banknote,breast-cancer,wine-red,diabetes,wine,mnist",
                        help=f"comma-separated, from {', '.join(TABLES)} (the default leaves out "
                             f"{', '.join(SWEEP_TABLES)}: the table defaults were chosen on them)")
    parser.add_argument("--masks", default="mcar,mar,mnar", help="comma-separated, from mcar, mar, mnar")
    parser.add_argument("--rates", default="0.2,0.5", help="missing probabilities (per masked column)")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--imputers", default=",".join(DEEPEM + BASELINES))
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the downstream score")
    parser.add_argument("--forest-trees", type=int, default=100, help="trees of the downstream random forest")
    parser.add_argument("--draws", type=int, default=19,
                        help="multiple imputations per interval: 19, 39, 59, ... (0: no coverage)")
    parser.add_argument("--no-downstream", action="store_true", help="skip the cross-validated forest")
    parser.add_argument("--data-dir", default=os.environ.get("DEEPEM_DATA", "data"))
    parser.add_argument("--quick", action="store_true",
                        help=f"a tiny run (seconds) for the test: {QUICK} unless given, DeepImputer {QUICK_DEEPEM}")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--force", action="store_true", help="overwrite existing result files")
    parser.add_argument("--resume", action="store_true", help="keep the rows of existing result files")
    parser.add_argument("--report-only", action="store_true", help="rewrite the result files from their JSON")
    parser.add_argument("--merge", nargs="+", metavar="PART_DIR", default=None,
                        help="join the results of parts (each an --out of an earlier run) into --out")
    given = {arg.split("=")[0][2:].replace("-", "_") for arg in (argv if argv is not None else sys.argv[1:])
             if arg.startswith("--")}
    a = parser.parse_args(argv)
    if a.quick:
        for key, value in QUICK.items():
            if key not in given:
                setattr(a, key, value)
    if a.draws and (a.draws + 1) % 20:
        raise BenchmarkInputError(f"--draws {a.draws}: give 19, 39, 59, ... so that a 90 % interval is exact "
                                  "order statistics, or 0")
    return a


def plan(a: argparse.Namespace) -> dict[str, list]:
    def items(text: str) -> list[str]:
        return [s.strip() for s in text.split(",") if s.strip()]
    try:
        lists = {"tables": items(a.tables), "masks": items(a.masks), "rates": [float(r) for r in items(a.rates)],
                 "seeds": [int(s) for s in items(a.seeds)], "imputers": items(a.imputers)}
    except ValueError as err:
        raise BenchmarkInputError(f"--rates are numbers and --seeds whole numbers ({err})") from None
    for key, known in (("tables", TABLES), ("masks", tuple(MASKS)), ("imputers", DEEPEM + BASELINES)):
        unknown = [v for v in lists[key] if v not in known]
        if unknown:
            raise BenchmarkInputError(f"unknown {key} {', '.join(unknown)}; choose from {', '.join(known)}")
    if any(not 0 < r < 1 for r in lists["rates"]):
        raise BenchmarkInputError("--rates must lie in (0, 1)")
    return lists


def machine() -> dict[str, Any]:
    import sklearn
    return {"time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cpus": os.cpu_count(),
            "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
            "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__}


def main(argv: list[str] | None = None) -> int:
    try:
        a = parse_args(argv)
        lists = plan(a)
    except BenchmarkInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(a.out)
    results = out / f"{RESULTS_NAME}.json"
    if a.report_only:
        if not results.is_file():
            print(f"error: {results} not found; --report-only rewrites existing results", file=sys.stderr)
            return 2
        record = json.loads(results.read_text())
        write(out, {k: v for k, v in record.items() if k not in ("rows", "paired", "coverage", "cost")},
              record["rows"])
        return 0
    if a.merge:
        return merge_parts([Path(p) for p in a.merge], out, a.force)
    if results.exists() and not (a.force or a.resume):
        print(f"error: {results} exists; give --resume to add to it or --force to overwrite it", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # IterativeImputer at max_iter: as in the gallery
    given = argv if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "benchmarks/imputation_benchmark.py", *given])
    rows: list[dict[str, Any]] = json.loads(results.read_text())["rows"] if a.resume and results.exists() else []
    done = {(r["table"], r["mask"], r["rate"], r["seed"], r["imputer"]) for r in rows}
    settings = {k: v for k, v in vars(a).items() if k not in ("force", "resume", "report_only")}
    record = {"command": command, "settings": settings,
              "plan": lists, "budgets": budgets(a), "machine_start": machine(), "skipped": {}, "tables": {}}
    for table_name in lists["tables"]:
        try:
            table = load_table(table_name, Path(a.data_dir))
        except BenchmarkInputError as err:
            record["skipped"][table_name] = str(err)
            print(f"skipped {table_name}: {err}", flush=True)
            continue
        record["tables"][table_name] = {"rows": table.x.shape[0], "columns": table.x.shape[1], "task": table.task
                                        or "none (no label)", "binary": table.binary, "note": table.note}
        for seed in lists["seeds"]:
            for mask_name in lists["masks"]:
                for rate in lists["rates"]:
                    gen = torch.Generator().manual_seed(seed)
                    mask = MASKS[mask_name](torch.from_numpy(table.x), rate, gen).numpy()
                    for name in lists["imputers"]:
                        key = (table_name, mask_name, rate, seed, name)
                        reason = skip_reason(table, name)
                        if key in done or reason:
                            if reason:
                                record["skipped"][f"{table_name}/{name}"] = reason
                            continue
                        row = {"table": table_name, "mask": mask_name, "rate": rate, "seed": seed, "imputer": name,
                               "missing_fraction": round(float((~mask).mean()), 4)} | run_cell(table, mask, name,
                                                                                                 seed, a)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        write(out, record | {"machine_end": machine()}, rows)
    write(out, record | {"machine_end": machine()}, rows)
    return 0


def merge_parts(parts: list[Path], out: Path, force: bool) -> int:
    """One pair of result files from the parts' JSON: rows joined (a cell run by two parts is refused),
    tables and skips united, each part's command and machine record kept."""
    results = out / f"{RESULTS_NAME}.json"
    if results.exists() and not force:
        print(f"error: {results} exists; give --force to overwrite it", file=sys.stderr)
        return 2
    records = []
    for part in parts:
        path = part / f"{RESULTS_NAME}.json"
        if not path.is_file():
            print(f"error: {path} not found; give --merge the --out folders of finished parts", file=sys.stderr)
            return 2
        records.append(json.loads(path.read_text()))
    rows, seen = [], set()
    for record in records:
        for row in record["rows"]:
            key = (row["table"], row["mask"], row["rate"], row["seed"], row["imputer"])
            if key in seen:
                print(f"error: two parts ran {key}; merge parts that ran different cells", file=sys.stderr)
                return 2
            seen.add(key)
            rows.append(row)
    first, last = records[0], max(records, key=lambda r: r["machine_end"]["time_utc"])
    plan = {k: list(dict.fromkeys(v for r in records for v in r["plan"][k])) for k in first["plan"]}
    # the report puts the environment before the first command only: the others get theirs here
    merged = {"command": " & OMP_NUM_THREADS=1 PYTHONPATH=src ".join(r["command"] for r in records)
              + " (parts side by side; joined by "
              f"--merge {' '.join(str(p) for p in parts)})", "settings": first["settings"], "plan": plan,
              "budgets": first["budgets"], "machine_start": min((r["machine_start"] for r in records),
                                                                key=lambda m: m["time_utc"]),
              "machine_end": last["machine_end"], "parts": [{k: r[k] for k in ("command", "machine_start",
                                                                                 "machine_end")} for r in records],
              "skipped": {k: v for r in records for k, v in r["skipped"].items()},
              "tables": {k: v for r in records for k, v in r["tables"].items()}}
    write(out, merged, rows)
    return 0


def budgets(a: argparse.Namespace) -> dict[str, str]:
    deepem = DeepImputer().get_params()
    if a.quick:
        deepem |= {k: v for k, v in QUICK_DEEPEM.items() if k in deepem}
    shown = {k: v for k, v in deepem.items() if k not in ("random_state", "verbose")}
    table = {**TABLE_DEFAULTS, **STOPPING_DEFAULTS}
    return {"deepem": f"DeepImputer defaults{' (--quick: reduced)' if a.quick else ''}: {shown} (None: the "
                      f"table default, models/config.py: {table})",
            "deepem-miss-iwem": "the same with method='miss-iwem'",
            "mean": "SimpleImputer(strategy='mean')",
            "knn": "KNNImputer(n_neighbors=5), columns as given (not standardised), as in the gallery",
            "iterative-br": "IterativeImputer(BayesianRidge(), max_iter=10); draws: sample_posterior=True, "
                            f"{a.draws} fits with seeds 1000 * seed + d",
            "iterative-et": "IterativeImputer(ExtraTreesRegressor(n_estimators=10), max_iter=10)",
            "downstream": "skipped (--no-downstream)" if a.no_downstream else
                          f"{a.folds}-fold (stratified for classification) cross-validated random forest of "
                          f"{a.forest_trees} trees, imputer inside the Pipeline",
            "intervals": f"{a.draws} draws per cell; interval from the k-th smallest to the k-th largest, "
                         f"k = {(a.draws + 1) // 20}"}


if __name__ == "__main__":
    sys.exit(main())
