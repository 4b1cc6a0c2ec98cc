"""What fitting a small table costs: `DeepImputer().fit` on scikit-learn's diabetes table (442 x 10, MCAR 20 %)
per update, against the same maths written as a plain PyTorch MIWAE step and against IterativeImputer(BayesianRidge).

    OMP_NUM_THREADS=1 python benchmarks/small_table_fit.py [--rounds 7] [--profile] [--out benchmarks/results]

At the table defaults (d = 10, batch 64, K = 20, 3 x 128 tanh, latent 9, Adam lr 1e-3) it times, interleaved in
one process (round after round, each timing once per round, so that a change of the machine's load falls on all):

- `deepem step`: the library's guarded step (training/step.py TrainStep, as the Trainer builds it) on one batch;
- `deepem fit`: `DeepImputer(random_state=0).fit` (100 epochs, 7 batches each: 700 updates), per update;
- `plain step`: a MIWAE step written here in plain PyTorch (nn.Sequential, torch.optim.Adam): the floor of the
  same arithmetic with nothing around it;
- `IterativeImputer`: IterativeImputer(BayesianRidge(), random_state=0).fit on the same table, whole fit.

Times are medians over the rounds of each timing's seconds (range in brackets); the machine's load average
(`uptime`) before and after is recorded, since on a shared machine only ratios measured together mean much.
--profile adds the ATen calls of one step of each (torch.profiler, as step_overhead.py counts them) and where
the fit's time goes beyond its steps. Writes small_table_fit.json and small_table_fit.md."""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import deepem

K, BATCH, WIDTH, DEPTH, LR, EPOCHS, MISSING = 20, 64, 128, 3, 1e-3, 100, 0.2


def diabetes() -> np.ndarray:
    """The diabetes features with 20 % of the cells MCAR (NaN), from a fixed seed."""
    from sklearn.datasets import load_diabetes
    x = load_diabetes().data.copy()
    x[np.random.default_rng(0).random(x.shape) < MISSING] = np.nan
    return x


def standardised(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows standardised with their observed entries, missing set to 0; the mask, True = observed)."""
    mask = ~np.isnan(x)
    z = (x - np.nanmean(x, 0)) / np.nanstd(x, 0)
    return torch.from_numpy(np.where(mask, z, 0.0)).float(), torch.from_numpy(mask)


def deepem_trainer(x: np.ndarray):  # noqa: ANN201 - a Trainer
    """The Trainer DeepImputer builds (the same run_config and build_trainer), in memory."""
    from deepem.data.base import DataSplits
    from deepem.workflows.assembly import build_trainer, run_config
    rows, mask = standardised(x)
    n, d = rows.shape
    config = run_config({"dataset": "scikit-learn", "seed": 0, "valid_every": 0, "split": "1,0,0",
                         "method": "miwae", "epochs": EPOCHS}, table_columns=d)
    empty = torch.zeros(0, d)
    data = DataSplits("diabetes", rows, empty, empty, "gaussian", train_mask=mask, valid_mask=empty.bool(),
                      test_mask=empty.bool())
    return build_trainer(config, None, data, log=lambda message: None, progress=False)


class PlainMIWAE(nn.Module):
    """MIWAE in plain PyTorch: the model of the table defaults (Gaussian q with exp std, Gaussian likelihood
    with softplus std + 1e-3, N(0, I) prior), the bound of Mattei & Frellsen (2019) eq. 4."""

    def __init__(self, d: int, latent: int) -> None:
        super().__init__()

        def mlp(n_in: int, n_out: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            for width in [WIDTH] * DEPTH:
                layers += [nn.Linear(n_in, width), nn.Tanh()]
                n_in = width
            return nn.Sequential(*layers, nn.Linear(n_in, n_out))

        self.encoder, self.decoder = mlp(d, 2 * latent), mlp(latent, 2 * d)

    def loss(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mu_q, log_std_q = self.encoder(x).chunk(2, -1)
        std_q = log_std_q.exp()
        eps = torch.randn((K, *mu_q.shape))
        z = mu_q + std_q * eps
        log_q = (-0.5 * eps.pow(2) - log_std_q - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prior = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
        mu_x, raw = self.decoder(z).chunk(2, -1)
        std_x = nn.functional.softplus(raw) + 1e-3
        log_px = -0.5 * ((x - mu_x) / std_x).pow(2) - std_x.log() - 0.5 * math.log(2 * math.pi)
        log_w = (log_px * mask).sum(-1) + log_prior - log_q
        return -(torch.logsumexp(log_w, 0) - math.log(K)).mean()


def plain_step(x: torch.Tensor, mask: torch.Tensor) -> Callable[[], None]:
    torch.manual_seed(0)
    model = PlainMIWAE(x.shape[1], x.shape[1] - 1)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    xb, mb = x[:BATCH], mask[:BATCH].float()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(xb, mb).backward()
        opt.step()

    return step


def iterative_fit(x: np.ndarray) -> None:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer
    from sklearn.linear_model import BayesianRidge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (ConvergenceWarning at the default 10 rounds)
        IterativeImputer(BayesianRidge(), random_state=0).fit(x)


def deepem_fit(x: np.ndarray) -> int:
    from deepem.sklearn import DeepImputer
    imputer = DeepImputer(random_state=0).fit(x)
    return imputer.n_iter_ * math.ceil(x.shape[0] / BATCH)


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, minor page faults) per call of `fn`."""
    faults, cpu, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time(), time.perf_counter()
    for _ in range(repeat):
        fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall / repeat, cpu / repeat, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / repeat


def aten_calls(fn: Callable[[], Any]) -> Counter:
    from torch.profiler import ProfilerActivity, profile
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return Counter(e.name for e in prof.events() if e.name.startswith("aten::"))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average:")[-1].strip()


def summary(values: list[float], scale: float = 1e3) -> dict[str, float]:
    return {"median": statistics.median(values) * scale, "min": min(values) * scale, "max": max(values) * scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50, help="steps per round of each step timing")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--name", default="small_table_fit", help="the results' file name (without suffix)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = parser.parse_args()
    x = diabetes()
    updates = EPOCHS * math.ceil(x.shape[0] / BATCH)
    trainer = deepem_trainer(x)
    xb, mb = trainer.train_data[:BATCH], trainer.train_mask[:BATCH]
    library_step = (lambda: trainer.step(xb, mb))  # noqa: E731
    plain = plain_step(trainer.train_data, trainer.train_mask)
    for fn in (library_step, plain, lambda: iterative_fit(x)):  # warm-up
        for _ in range(3):
            fn()
    assert deepem_fit(x) == updates
    load_before = uptime()
    names = ("deepem step", "plain step", "deepem fit per update", "IterativeImputer fit", "deepem fit")
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    faults: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(a.rounds):
        for name, fn, repeat in (("deepem step", library_step, a.steps), ("plain step", plain, a.steps),
                                 ("IterativeImputer fit", lambda: iterative_fit(x), 1),
                                 ("deepem fit", lambda: deepem_fit(x), 1)):
            w, c, f = timed(fn, repeat)
            wall[name].append(w), cpu[name].append(c), faults[name].append(f)
        for d in (wall, cpu, faults):
            d["deepem fit per update"].append(d["deepem fit"][-1] / updates)
    load_after = uptime()

    def ratio(times: dict[str, list[float]], num: str, den: str, scale: float = 1.0) -> float:
        return statistics.median(scale * n / d for n, d in zip(times[num], times[den], strict=True))

    per_update = ("deepem step", "plain step", "deepem fit per update")
    result: dict[str, Any] = {
        "shapes": {"rows": x.shape[0], "d": x.shape[1], "batch": BATCH, "K": K, "hidden": [WIDTH] * DEPTH,
                   "latent": x.shape[1] - 1, "epochs": EPOCHS, "updates": updates},
        "wall_ms": {k: summary(wall[k]) for k in per_update},
        "cpu_ms": {k: summary(cpu[k]) for k in per_update},
        "wall_s": {k: summary(wall[k], 1.0) for k in ("deepem fit", "IterativeImputer fit")},
        "cpu_s": {k: summary(cpu[k], 1.0) for k in ("deepem fit", "IterativeImputer fit")},
        "page_faults_per_update": {k: statistics.median(faults[k]) for k in per_update},
        "ratios": {f"{kind} {num} / {den}": ratio(times, num, den, scale)
                   for kind, times in (("wall", wall), ("cpu", cpu))
                   for num, den, scale in (("deepem fit", "IterativeImputer fit", 1.0),
                                           ("deepem step", "plain step", 1.0),
                                           ("deepem fit per update", "plain step", 1.0),
                                           ("plain step", "IterativeImputer fit", updates))},
        "load_before": load_before, "load_after": load_after, "rounds": a.rounds, "steps": a.steps,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "library": str(Path(deepem.__file__).parent)}
    if a.profile:
        calls = {"deepem step": aten_calls(library_step), "plain step": aten_calls(plain)}
        result["aten_calls"] = {k: sum(v.values()) for k, v in calls.items()}
        result["aten_top"] = {k: dict(v.most_common(12)) for k, v in calls.items()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    write_md(out / f"{a.name}.md", result)
    print((out / f"{a.name}.md").read_text())


def write_md(path: Path, r: dict[str, Any]) -> None:
    s = r["shapes"]
    lines = ["# Small-table fit: DeepImputer on diabetes against a plain PyTorch step and IterativeImputer", "",
             "Command: `OMP_NUM_THREADS=1 python benchmarks/small_table_fit.py"
             + (" --profile" if "aten_calls" in r else "") + "`", "",
             f"diabetes {s['rows']} x {s['d']}, MCAR 20 %; batch {s['batch']}, K {s['K']}, hidden {s['hidden']} tanh, "
             f"latent {s['latent']}; {s['epochs']} epochs = {s['updates']} updates. {r['rounds']} interleaved rounds "
             f"({r['steps']} steps per step timing); torch {r['torch']}, {r['threads']} thread(s). "
             f"Load average before / after: {r['load_before']} / {r['load_after']}.", "",
             f"Library: {r['library']}.", "",
             "| timing | wall median | wall range | CPU median | CPU range | page faults |",
             "|---|---|---|---|---|---|"]
    for k, v in r["wall_ms"].items():
        c = r["cpu_ms"][k]
        lines.append(f"| {k} | {v['median']:.2f} ms | {v['min']:.2f} – {v['max']:.2f} ms | {c['median']:.2f} ms "
                     f"| {c['min']:.2f} – {c['max']:.2f} ms | {r['page_faults_per_update'][k]:.0f} |")
    for k, v in r["wall_s"].items():
        c = r["cpu_s"][k]
        lines.append(f"| {k} | {v['median']:.3f} s | {v['min']:.3f} – {v['max']:.3f} s | {c['median']:.3f} s "
                     f"| {c['min']:.3f} – {c['max']:.3f} s | |")
    lines += ["", "| ratio (median of the per-round ratios; `plain step / IterativeImputer fit` is for "
              f"{s['updates']} plain steps) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in r["ratios"].items()]
    if "aten_calls" in r:
        lines += ["", "ATen calls per step: " + ", ".join(f"{k} {v}" for k, v in r["aten_calls"].items()) + "."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
