"""What fitting a small table costs: `DeepImputer().fit` on scikit-learn's diabetes table (442 x 10, MCAR 20 %)
per update, against the same maths written as a plain PyTorch MIWAE step and against IterativeImputer(BayesianRidge).

    OMP_NUM_THREADS=1 python benchmarks/small_table_fit.py [--rounds 7] [--profile] [--out benchmarks/results]

At the table defaults (d = 10, batch 64, K = 20, 3 x 128 tanh, latent 9, Adam lr 1e-3) it times, interleaved in
one process (round after round, each timing once per round, so that a change of the machine's load falls on all):

- `deepem step`: the library's guarded step (training/step.py TrainStep, as the Trainer builds it) on one batch;
- `deepem fit`: `DeepImputer(random_state=0).fit` at its defaults (its budget, `n_iter_` updates), and per update;
- `plain step`: a MIWAE step written here in plain PyTorch (nn.Sequential, torch.optim.Adam): the floor of the
  same arithmetic with nothing around it;
- `IterativeImputer`: IterativeImputer(BayesianRidge(), random_state=0).fit on the same table, whole fit.

The rounds are benchmarks/harness.py's interleaved blocks (the order rotated from round to round); each timing
is taken by the wall clock, by this process's CPU clock and, for the steps, in minor page faults per call.
Figures are medians over the rounds with their spread; ratios are per round, then their median (harness
`summarise`). The contention record (load average before and after, CPU, threads) comes with them, since on a
shared machine only ratios measured together mean much. --profile adds the ATen calls of one step of each
(torch.profiler, as step_overhead.py counts them). Writes small_table_fit.json and small_table_fit.md (harness
`write_results`)."""

from __future__ import annotations

import argparse
import math
import resource
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
from harness import (
    command_line,
    contention,
    finish,
    fmt_ratio,
    interleaved_blocks,
    spread,
    summarise,
    timer,
    write_results,
)

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
    """A whole fit at the defaults; its updates (`n_iter_` counts optimiser steps)."""
    from deepem.sklearn import DeepImputer
    return DeepImputer(random_state=0).fit(x).n_iter_


def minor_faults() -> float:
    """A clock in minor page faults of this process (for `harness.timer`: faults per call)."""
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def aten_calls(fn: Callable[[], Any]) -> Counter:
    from torch.profiler import ProfilerActivity, profile
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return Counter(e.name for e in prof.events() if e.name.startswith("aten::"))


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time, "page faults": minor_faults}


def measures(x: np.ndarray, steps: int) -> tuple[dict[str, Callable[[int], float]], dict[str, int]]:
    """The timings, each under every clock that applies (named 'TIMING | CLOCK'), and their calls per round."""
    trainer = deepem_trainer(x)
    xb, mb = trainer.train_data[:BATCH], trainer.train_mask[:BATCH]
    workloads: dict[str, tuple[Callable[[], object], int]] = {
        "deepem step": (lambda: trainer.step(xb, mb), steps),
        "plain step": (plain_step(trainer.train_data, trainer.train_mask), steps),
        "IterativeImputer fit": (lambda: iterative_fit(x), 1),
        "deepem fit": (lambda: deepem_fit(x), 1)}
    for fn, n in workloads.values():  # warm-up
        for _ in range(3 if n > 1 else 1):
            fn()
    timings, calls = {}, {}
    for name, (fn, n) in workloads.items():
        for clock, read in CLOCKS.items():
            if clock == "page faults" and n == 1:  # (a whole fit: only its time)
                continue
            timings[f"{name} | {clock}"], calls[f"{name} | {clock}"] = timer(fn, clock=read), n
    return timings, calls


def by_clock(times: dict[str, list[float]], clock: str, updates: int) -> dict[str, list[float]]:
    """One clock's per-round figures by timing, with the fit per update and a fit's worth of plain steps."""
    out = {name.split(" | ")[0]: values for name, values in times.items() if name.endswith(f" | {clock}")}
    if "deepem fit" in out:
        out["deepem fit per update"] = [t / updates for t in out["deepem fit"]]
        out["plain steps of a fit"] = [t * updates for t in out["plain step"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50, help="steps per round of each step timing")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--name", default="small_table_fit", help="the results' file name (without suffix)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = parser.parse_args()
    x = diabetes()
    updates = deepem_fit(x)  # (the fit's own budget; also a warm-up)
    timings, calls = measures(x, a.steps)
    record = contention()
    times = interleaved_blocks(timings, a.rounds, calls)
    finish(record)
    figures = {clock: by_clock(times, clock, updates) for clock in CLOCKS}
    # the ratios of the earlier records: each against its reference, per round
    ratios = {clock: {**{f"{n} / plain step": s for n, s in summarise(figures[clock], "plain step").items()
                         if n in ("deepem step", "deepem fit per update")},
                      **{f"{n} / IterativeImputer fit": s
                         for n, s in summarise(figures[clock], "IterativeImputer fit").items()
                         if n in ("deepem fit", "plain steps of a fit")}}
              for clock in ("wall", "cpu")}
    seconds = {clock: {n: spread(values) for n, values in f.items()} for clock, f in figures.items()}
    data: dict[str, Any] = {
        "shapes": {"rows": x.shape[0], "d": x.shape[1], "batch": BATCH, "K": K, "hidden": [WIDTH] * DEPTH,
                   "latent": x.shape[1] - 1, "updates": updates},
        "per_call": seconds, "ratios": ratios, "rounds": a.rounds, "steps": a.steps,
        "library": str(Path(deepem.__file__).parent)}
    if a.profile:
        trainer = deepem_trainer(x)
        xb, mb = trainer.train_data[:BATCH], trainer.train_mask[:BATCH]
        profiled = {"deepem step": aten_calls(lambda: trainer.step(xb, mb)),
                    "plain step": aten_calls(plain_step(trainer.train_data, trainer.train_mask))}
        data["aten_calls"] = {k: sum(v.values()) for k, v in profiled.items()}
        data["aten_top"] = {k: dict(v.most_common(12)) for k, v in profiled.items()}
    print(write_results(a.out, a.name, "Small-table fit: DeepImputer on diabetes against a plain PyTorch step and "
                        "IterativeImputer", body(data), data, record, command_line()))


def body(r: dict[str, Any]) -> list[str]:
    """The results page's text below the command and the contention record."""
    s = r["shapes"]
    lines = [f"diabetes {s['rows']} x {s['d']}, MCAR 20 %; batch {s['batch']}, K {s['K']}, hidden {s['hidden']} "
             f"tanh, latent {s['latent']}; a fit is {s['updates']} updates. {r['rounds']} interleaved "
             f"rounds ({r['steps']} steps per step timing). Library: {r['library']}.", "",
             "| timing | wall median | wall range | CPU median | CPU range | page faults |",
             "|---|---|---|---|---|---|"]
    wall, cpu, faults = r["per_call"]["wall"], r["per_call"]["cpu"], r["per_call"]["page faults"]
    for name in ("deepem step", "plain step", "deepem fit per update", "deepem fit", "IterativeImputer fit"):
        scale, unit = (1e3, "ms") if name in ("deepem step", "plain step", "deepem fit per update") else (1.0, "s")
        w, c = wall[name], cpu[name]
        fault = f"{faults[name]['median']:.0f}" if name in faults else ""
        lines.append(f"| {name} | {w['median'] * scale:.2f} {unit} | {w['min'] * scale:.2f} – {w['max'] * scale:.2f} "
                     f"{unit} | {c['median'] * scale:.2f} {unit} | {c['min'] * scale:.2f} – {c['max'] * scale:.2f} "
                     f"{unit} | {fault} |")
    lines += ["", "| ratio (per round; median (min–max)); `plain steps of a fit` is "
              f"{s['updates']} plain steps | wall | CPU |", "|---|---|---|"]
    lines += [f"| {k} | {fmt_ratio(v)} | {fmt_ratio(r['ratios']['cpu'][k])} |" for k, v in r["ratios"]["wall"].items()]
    if "aten_calls" in r:
        lines += ["", "ATen calls per step: " + ", ".join(f"{k} {v}" for k, v in r["aten_calls"].items()) + "."]
    return lines


if __name__ == "__main__":
    main()
