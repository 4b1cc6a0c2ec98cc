"""The IWEM paper's Table 4 protocol carried to convergence: the four UCI tables with half of the cells
missing completely at random (mcar:0.5), the whole table (the paper's transductive setting: train on
every row, impute every row's missing cells), deepem's miwae, miss-iwem-woa and miss-iwem, stopped by
the library's held-out-cells rule, beside scikit-learn's imputers on the same masks; and one learning
curve (one table, one seed, the three methods, no stopping).

    # the table (resumes where it stopped; rows in RUNS/rows.jsonl)
    python benchmarks/uci_converged.py table --data-dir /work/shared/data
    # the learning curve (resumes per method)
    python benchmarks/uci_converged.py curve --data-dir /work/shared/data

The stopping rule is the library's (`deepem train --validation-fraction F --valid-every-steps N
--patience P --max-iter M`, built here by `workflows.assembly.assemble`): a fraction F of the OBSERVED
cells is hidden from training by a mask of the seed alone; every N updates the model imputes them
(self-normalised IS mean, K = --valid-particles, each method's own proposal) and training stops when
their RMSE has not improved for P checks in a row, or after M updates (the cap); the best check's
parameters are kept. In the transductive setting the missing cells' truth is never seen and the
table's own likelihood bound rewards fitting the table, so held-out observed cells are the honest
criterion. The final imputation conditions on every observed cell (the held-out ones included: they
are observed) with K = --impute-particles.

Model and training, chosen before any result was seen (IWEM paper sec. 5 where it says): MLPs of three
tanh hidden layers of 128, Gaussian q, Gaussian observation model with learnt variance, latent
dimension p - 1 (the paper does not give it), K = J = 20 (the paper picks them by validation, values
unreported), Adam with rate 5e-4, batches of 100; miss-iwem's α starts at 0 and rises by 0.01 after
every epoch (the paper's schedule). MSE is over the missing cells on the standardised scale (the
observed training split's mean and s.d., as make_incomplete standardises)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from deepem.data.base import DataSplits
from deepem.evaluation.imputation import missing_mse
from deepem.evaluation.own_rows import impute_rows
from deepem.models import ModelConfig
from deepem.training import TrainConfig, Trainer
from deepem.workflows.assembly import assemble

sys.path.insert(0, str(Path(__file__).parent))
from uci_converged_report import METHODS, write_curve, write_table  # noqa: E402
from uci_imputation import BASELINES, DATASETS, baseline, table_data  # noqa: E402


def _quiet(message: str) -> None:
    pass


def cpu_seconds() -> float:
    """CPU time of this process (user + system): what the budget is counted in on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_config(method: str, p: int, seed: int, a: argparse.Namespace, max_iter: int, patience: int) -> TrainConfig:
    options: dict[str, Any] = {"particles": a.particles}
    if method == "miss-iwem":  # the paper's schedule: α from 0, +0.01 after every epoch
        options.update(alpha_start=0.0, alpha_step=0.01, alpha_every=1, alpha_unit="epochs")
    model = ModelConfig(latent_dim=p - 1, hidden=[128, 128, 128], activation="tanh", likelihood="gaussian")
    return TrainConfig(dataset="uci-benchmark", method=method, method_options=options, model=model,
                       max_iter=max_iter, batch_size=a.batch_size, lr=a.lr, seed=seed,
                       valid_every_steps=a.valid_steps, validation_fraction=a.validation_fraction,
                       patience=patience, valid_particles=a.valid_particles)


def whole_table(d: dict[str, torch.Tensor]) -> DataSplits:
    """The incomplete table as the training split of a DataSplits (no validation rows: the rule holds
    out cells of these rows)."""
    empty = d["x"][:0]
    return DataSplits("uci-benchmark", d["x"], empty, empty, "gaussian", train_mask=d["mask"],
                      valid_mask=empty.bool(), test_mask=empty.bool())


def build(method: str, d: dict[str, torch.Tensor], seed: int, a: argparse.Namespace, max_iter: int,
          patience: int, record: list[dict[str, Any]] | None = None) -> Trainer:
    """The library's trainer of the run (assemble: model, method, held-out cells, their validator); with
    `record`, every check also appends the step, the held-out RMSE, the missing cells' MSE and α."""
    built = assemble(run_config(method, d["x"].shape[1], seed, a, max_iter, patience), data=whole_table(d))
    validate = built.validate
    trainer: Trainer | None = None
    if record is not None:
        rule = built.validate
        proposal = built.method.imputation_proposal if hasattr(built.method, "imputation_proposal") else "zero-filled"

        def validate(model: torch.nn.Module) -> Any:
            estimate = rule(model)
            imputed = impute_rows(model, d["x"], d["mask"], a.curve_impute_particles, 0, proposal, seed).imputed
            mse, _ = missing_mse(imputed, d["truth"], d["mask"])
            assert trainer is not None
            record.append({"step": trainer.state.step, "held_out_rmse": -estimate.mean, "mse": mse,
                           "alpha": getattr(built.method, "anneal_alpha", 1.0),
                           "cpu_s": round(cpu_seconds(), 1)})
            return estimate

    trainer = Trainer(built.model, built.method, built.train, None, built.config, validate=validate,
                      train_mask=built.train_mask, log=_quiet, progress=False)
    trainer.start()
    return trainer


def train_and_impute(method: str, d: dict[str, torch.Tensor], seed: int, a: argparse.Namespace) -> dict[str, Any]:
    start, cpu = time.perf_counter(), cpu_seconds()
    trainer = build(method, d, seed, a, a.max_updates, a.patience)
    summary = trainer.fit()  # ends holding the best check's parameters
    train_s, train_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    checks = [h for h in trainer.state.history if h["kind"] == "valid"]
    best = max(checks, key=lambda h: h["valid_bound"])
    per_epoch = trainer.batches_per_epoch
    start, cpu = time.perf_counter(), cpu_seconds()
    proposal = "completed" if method.startswith("miss-iwem") else "zero-filled"
    result = impute_rows(trainer.model.eval(), d["x"], d["mask"], a.impute_particles, 0, proposal, seed)
    mse, _ = missing_mse(result.imputed, d["truth"], d["mask"])
    return {"mse": mse, "updates": summary["steps"], "cap_updates": a.max_updates,
            "hit_cap": summary["steps"] >= a.max_updates and not summary["stopped_early"],
            "stopped_by_rule": bool(summary["stopped_early"]), "best_update": summary["best_step"],
            "best_held_out_rmse": -best["valid_bound"], "checks": len(checks),
            # α at the best check (miss-iwem: +0.01 per epoch from 0)
            "alpha_at_best": min(1.0, 0.01 * (summary["best_step"] // per_epoch)) if method == "miss-iwem" else 1.0,
            "updates_per_epoch": per_epoch, "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu, 1),
            "impute_s": round(time.perf_counter() - start, 1), "impute_cpu_s": round(cpu_seconds() - cpu, 1)}


def environment() -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "load_average": os.getloadavg(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def load_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def append_row(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def run_table(a: argparse.Namespace, root: Path, command: str) -> None:
    done_path = root / "rows.jsonl"
    rows = load_rows(done_path)
    plan = [(int(s), d) for s in a.seeds.split(",") for d in a.datasets.split(",")]
    # seeds listed in --late-seeds for a table come after every other run (the first to be cut)
    late = {(int(s), d) for item in a.late.split(",") if item for d, s in [item.split(":")]}
    plan = [x for x in plan if x not in late] + [x for x in plan if x in late]
    for seed, dataset in plan:
        d = None
        for imputer in BASELINES + METHODS:
            key = {"dataset": dataset, "imputer": imputer, "seed": seed}
            if any(all(r[k] == v for k, v in key.items()) for r in rows):
                continue
            if a.stop_at and time.strftime("%H:%M", time.gmtime()) >= a.stop_at:
                print(f"--stop-at {a.stop_at} UTC reached: no new run starts", flush=True)
                return
            d = d or table_data(dataset, seed, "whole", a.data_dir)
            result = baseline(imputer, d, seed) if imputer in BASELINES else train_and_impute(imputer, d, seed, a)
            row = key | result | {"load_average": round(os.getloadavg()[0], 2)}
            rows.append(row)
            append_row(done_path, row)
            write_table(rows, a, command, environment())


def run_curve(a: argparse.Namespace, root: Path, command: str) -> None:
    """One table, one seed, each method trained to --curve-updates with no stopping, checked every
    --valid-steps updates: the held-out criterion and the missing cells' MSE (K = --curve-impute-particles)."""
    path = root / f"curve-{a.curve_dataset}-s{a.curve_seed}.json"
    curves: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    d = table_data(a.curve_dataset, a.curve_seed, "whole", a.data_dir)
    a = argparse.Namespace(**{**vars(a), "valid_steps": a.curve_every})  # the rule's check, every point
    for method in a.curve_methods.split(","):
        if method in curves and curves[method]["updates"] >= a.curve_updates:
            continue
        record: list[dict[str, Any]] = []
        start, cpu = time.perf_counter(), cpu_seconds()
        trainer = build(method, d, a.curve_seed, a, a.curve_updates, patience=0, record=record)
        trainer.fit()
        curves[method] = {"updates": trainer.state.step, "updates_per_epoch": trainer.batches_per_epoch,
                          "wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(cpu_seconds() - cpu, 1),
                          "points": record}
        path.write_text(json.dumps(curves, indent=1) + "\n")
        print(method, curves[method]["updates"], curves[method]["cpu_s"], flush=True)
        write_curve(curves, a, command, environment())


#: options of the table only, and of neither part (the commands written into the results leave them out)
TABLE_ONLY = ("seeds", "datasets", "late", "max_updates", "patience", "impute_particles")
NEITHER = ("what", "data_dir", "out", "runs", "stop_at")


def table_command(a: argparse.Namespace) -> str:
    return "python benchmarks/uci_converged.py table " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items()
        if k not in NEITHER and not k.startswith("curve") and v != "")


def curve_command(a: argparse.Namespace) -> str:
    return "python benchmarks/uci_converged.py curve " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k not in NEITHER + TABLE_ONLY and v != "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("table", "curve", "report"))
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--late", default="", help="TABLE:SEED,... run after all the others (cut first)")
    parser.add_argument("--max-updates", type=int, default=20000, help="the cap (updates)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--particles", type=int, default=20)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--valid-steps", type=int, default=100, help="updates between checks")
    parser.add_argument("--valid-particles", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--impute-particles", type=int, default=1000)
    parser.add_argument("--curve-dataset", default="banknote")
    parser.add_argument("--curve-seed", type=int, default=0)
    parser.add_argument("--curve-updates", type=int, default=20000)
    parser.add_argument("--curve-methods", default="miss-iwem,miwae,miss-iwem-woa", help="in this order")
    parser.add_argument("--curve-every", type=int, default=250, help="updates between the curve's points")
    parser.add_argument("--stop-at", default="", help="table: start no new run at or after this UTC time (HH:MM)")
    parser.add_argument("--curve-impute-particles", type=int, default=100)
    parser.add_argument("--runs", default="runs/uci-converged", help="where the rows go (kept, for resuming)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = parser.parse_args()
    torch.set_num_threads(1)
    command = curve_command(a) if a.what == "curve" else table_command(a)
    root = Path(a.runs)
    root.mkdir(parents=True, exist_ok=True)
    if a.what == "table":
        run_table(a, root, command)
    elif a.what == "curve":
        run_curve(a, root, command)
    else:  # rewrite the result files from the runs: the table's, and the curve's when it has one
        write_table(load_rows(root / "rows.jsonl"), a, command, environment())
        curve = root / f"curve-{a.curve_dataset}-s{a.curve_seed}.json"
        if curve.is_file():
            write_curve(json.loads(curve.read_text()), argparse.Namespace(**{**vars(a), "valid_steps": a.curve_every}),
                        curve_command(a), environment())


if __name__ == "__main__":
    main()
