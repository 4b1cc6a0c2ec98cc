"""The IWEM paper's Table 4 analogue: imputation error on the four UCI tables with half of the cells
missing completely at random (mcar:0.5), for deepem's miwae, miss-iwem-woa and miss-iwem, beside
scikit-learn's SimpleImputer (mean), KNNImputer and IterativeImputer (BayesianRidge, ExtraTrees) on the
same masks, in two settings:

- split: train on the incomplete 80 % training split, stop on the incomplete 10 % validation split,
  impute the training split's missing cells;
- whole: the paper's transductive setting: train on every row of the incomplete table, impute every
  row's missing cells; the stopping bound is computed on the table itself (nothing is held out).

    python benchmarks/uci_imputation.py --data-dir /work/shared/data --seeds 0,1,2,3,4 --whole-seeds 0,1

Model and training (IWEM paper sec. 5): MLPs of three tanh hidden layers of 128, Gaussian observation
model with learnt variance, Gaussian q, latent dimension p - 1 (ours: the paper does not give it),
K = --particles (ours: the paper picks K by validation and does not report it), Adam --lr (5e-4),
batch --batch-size (100); miss-iwem's α starts at 0 and rises by 0.01 per epoch. A run stops after
--patience validations (observed-data IW bound, K = --valid-particles, about every --valid-steps
updates) without a new best, or after --max-updates updates (rounded up to whole epochs); the best
validation's parameters impute. Imputation: self-normalised importance-sampling mean, K =
--impute-particles, with each method's own proposal (zero-filled for miwae, completed for miss-iwem*).
The masks come from the seed (make_incomplete, seed = run seed); the whole table is the three splits
with their masks concatenated, so both settings share the masks of the rows they share. MSE is over
the missing cells on the standardised scale (the observed training cells' mean and s.d.).

Every finished run is appended to RUNS/rows.jsonl and skipped when the command is run again (resume);
the result files (benchmarks/results/uci_imputation.{json,md}) are rewritten after every run."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (makes IterativeImputer importable)
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

from deepem.data import load_dataset
from deepem.data.incomplete import make_incomplete
from deepem.evaluation.imputation import missing_mse
from deepem.evaluation.own_rows import impute_rows
from deepem.methods.registry import make_method
from deepem.models import ModelConfig, make_model
from deepem.training import TrainConfig, Trainer
from deepem.training.checkpoint_file import load_latest_good
from deepem.workflows.assembly import iw_validator

sys.path.insert(0, str(Path(__file__).parent))
from uci_report import METHODS, write  # noqa: E402

DATASETS = ("banknote", "breast-cancer", "wine-red", "wine-white")
BASELINES = ("mean", "knn", "iterative-bayesridge", "iterative-extratrees")


def table_data(dataset: str, seed: int, setting: str, data_dir: str) -> dict[str, torch.Tensor]:
    """The incomplete rows to train on and impute, their mask and truth, and the stopping rows."""
    c = make_incomplete(load_dataset(dataset, data_dir), "mcar:0.5", seed)
    s, full = c.splits, c.complete
    if setting == "split":
        return {"x": s.train, "mask": s.train_mask, "truth": full.train, "vx": s.valid, "vmask": s.valid_mask}
    x = torch.cat([s.train, s.valid, s.test])
    mask = torch.cat([s.train_mask, s.valid_mask, s.test_mask])
    return {"x": x, "mask": mask, "truth": torch.cat([full.train, full.valid, full.test]), "vx": x, "vmask": mask}


def _quiet(message: str) -> None:
    pass


def train_and_impute(method: str, d: dict[str, torch.Tensor], seed: int, run_dir: Path,
                     a: argparse.Namespace) -> dict[str, Any]:
    n, p = d["x"].shape
    per_epoch = math.ceil(n / a.batch_size)
    epochs = math.ceil(a.max_updates / per_epoch)
    valid_every = max(1, round(a.valid_steps / per_epoch))
    options: dict[str, Any] = {"particles": a.particles}
    if method == "miss-iwem":  # the paper's schedule: α from 0, +0.01 per epoch
        options.update(alpha_start=0.0, alpha_step=0.01, alpha_every=1, alpha_unit="epochs")
    torch.manual_seed(seed)  # the initial weights are part of the run
    model = make_model(ModelConfig(latent_dim=p - 1, hidden=[128, 128, 128], activation="tanh",
                                   likelihood="gaussian"), p)
    settings = TrainConfig(dataset="uci-benchmark", epochs=epochs, batch_size=a.batch_size, lr=a.lr, seed=seed,
                           valid_every=valid_every, patience=a.patience, valid_particles=a.valid_particles,
                           checkpoint_every=epochs, keep_checkpoints=1)
    validate = iw_validator(d["vx"], a.valid_particles, seed, d["vmask"])
    start = time.perf_counter()
    trainer = Trainer(model, make_method(method, **options), d["x"], run_dir, settings, validate=validate,
                      train_mask=d["mask"], log=_quiet, progress=False)
    trainer.start(force=True)  # a run cut off half-way starts again
    trainer.fit()
    train_s = time.perf_counter() - start
    found = load_latest_good(run_dir / "checkpoints", map_location="cpu", warn=print, move_aside=False)
    assert found is not None, f"no checkpoint in {run_dir}"
    ckpt = found[1]
    model.load_state_dict(ckpt.get("best", ckpt)["model"])  # the best validation's parameters
    state = ckpt["train_state"]
    start = time.perf_counter()
    proposal = "completed" if method.startswith("miss-iwem") else "zero-filled"
    result = impute_rows(model.eval(), d["x"], d["mask"], a.impute_particles, 0, proposal, seed)
    impute_s = time.perf_counter() - start
    mse, _ = missing_mse(result.imputed, d["truth"], d["mask"])
    stopped = state["stale_validations"] >= a.patience
    return {"mse": mse, "updates": state["step"], "epochs": state["epoch"], "cap_updates": epochs * per_epoch,
            "best_update": state["best_epoch"] * per_epoch, "stopped_by_validation": bool(stopped),
            "train_s": round(train_s, 1), "impute_s": round(impute_s, 1)}


def baseline(name: str, d: dict[str, torch.Tensor], seed: int) -> dict[str, Any]:
    """A scikit-learn imputer fitted on the incomplete rows and imputing them (the same transductive use)."""
    imputer = {"mean": lambda: SimpleImputer(strategy="mean"),
               "knn": lambda: KNNImputer(n_neighbors=5),
               "iterative-bayesridge": lambda: IterativeImputer(max_iter=10, random_state=seed),
               "iterative-extratrees": lambda: IterativeImputer(
                   ExtraTreesRegressor(n_estimators=10, random_state=seed), max_iter=10, random_state=seed)}[name]()
    x = d["x"].to(torch.float64).masked_fill(~d["mask"], float("nan")).numpy()
    start = time.perf_counter()
    filled = torch.from_numpy(np.asarray(imputer.fit_transform(x)))
    seconds = time.perf_counter() - start
    mse, _ = missing_mse(filled, d["truth"].to(torch.float64), d["mask"])
    return {"mse": mse, "train_s": round(seconds, 1), "impute_s": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="seeds of the split setting")
    parser.add_argument("--whole-seeds", default="0,1,2,3,4", help="seeds of the whole-table setting")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--max-updates", type=int, default=20000, help="most updates of a run (whole epochs)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--particles", type=int, default=20)
    parser.add_argument("--valid-steps", type=int, default=100, help="updates between validations (about)")
    parser.add_argument("--valid-particles", type=int, default=50)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--impute-particles", type=int, default=1000)
    parser.add_argument("--runs", default="runs/uci-imputation", help="where the runs go (kept, for resuming)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the results from --runs, train nothing")
    a = parser.parse_args()
    torch.set_num_threads(1)
    command = "python benchmarks/uci_imputation.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k not in ("data_dir", "out", "runs",
                                                                              "report_only"))
    root = Path(a.runs)
    root.mkdir(parents=True, exist_ok=True)
    done_path = root / "rows.jsonl"
    rows = [json.loads(line) for line in done_path.read_text().splitlines() if line.strip()] \
        if done_path.is_file() else []
    if a.report_only:
        write(rows, a, command)
        return
    whole_seeds = [int(s) for s in a.whole_seeds.split(",") if s]
    # seed-major, so every seed completes a table before the next starts; the first whole-table seed
    # right after the first split seed, the other whole-table seeds last (they are the first to go)
    split_seeds = [int(s) for s in a.seeds.split(",")]
    plan = [("split", split_seeds[0])] + [("whole", s) for s in whole_seeds[:1]]
    plan += [("split", s) for s in split_seeds[1:]] + [("whole", s) for s in whole_seeds[1:]]
    for setting, seed in plan:
        for dataset in a.datasets.split(","):
            d = None
            for imputer in BASELINES + METHODS:
                key = {"setting": setting, "dataset": dataset, "imputer": imputer, "seed": seed}
                if any(all(r[k] == v for k, v in key.items()) for r in rows):
                    continue
                d = d or table_data(dataset, seed, setting, a.data_dir)
                row = key | (baseline(imputer, d, seed) if imputer in BASELINES else
                             train_and_impute(imputer, d, seed, root / f"{setting}-{dataset}-{imputer}-s{seed}", a))
                rows.append(row)
                with open(done_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                write(rows, a, command)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
