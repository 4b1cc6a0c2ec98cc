"""Cost of row-wise randomness (evaluation/own_rows.py) against one generator in row order (the
evaluation's impute / observed_log_likelihood, what impute_rows and score_rows called before): a
1000-row, 10-column table with 30% missing, the scikit-learn estimators' model (3 x 128 tanh MLPs,
9 Gaussian latents, float32), K = 1000, batches of 100 rows. Run with OMP_NUM_THREADS=1:

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/rowwise_cost.py

Prints the best of `--repeats` CPU times of each (process time: the machine is shared; the two interleaved,
so that a busy spell hits both), the ratio row-wise / row order of the best times, and the median and range
of that ratio repeat by repeat; with --out DIR it also writes rowwise_cost.md and .json there."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deepem.evaluation.imputation import impute
from deepem.evaluation.observed_loglik import observed_log_likelihood
from deepem.evaluation.own_rows import impute_rows, score_rows
from deepem.models import ModelConfig, make_model
from harness import (
    command_line,
    contention,
    finish,
    fmt_ratio,
    interleaved_blocks,
    markdown,
    summarise,
    timer,
    write_results,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write rowwise_cost.md and .json here")
    args = parser.parse_args()
    torch.manual_seed(0)
    d = 10
    model = make_model(ModelConfig(latent_dim=d - 1, hidden=[128, 128, 128], likelihood="gaussian"), d).eval()
    x = torch.randn(args.rows, d)
    mask = torch.rand(args.rows, d) > 0.3
    k, m = args.particles, args.draws
    pairs = {
        f"impute (K={k}, draws={m})": (lambda: impute(model, x, mask, k, m, batch_size=100, seed=0),
                                       lambda: impute_rows(model, x, mask, k, m, batch_size=100, seed=0)),
        f"score log p(x_o) (K={k}, completed)": (
            lambda: observed_log_likelihood(model, x, mask, k, "completed", batch_size=100, seed=0),
            lambda: score_rows(model, x, mask, k, "completed", batch_size=100, seed=0)),
    }
    record = contention()
    rows, lines = {}, ["| call | row order (one generator) | row-wise (keyed) | ratio of best | ratio per repeat |",
                       "|---|---|---|---|---|"]
    for name, (old, new) in pairs.items():
        times = interleaved_blocks({"row order": timer(old, clock=time.process_time),
                                    "row-wise": timer(new, clock=time.process_time)}, args.repeats, calls=1)
        summary = rows[name] = summarise(times, "row order")
        t_old, t_new = summary["row order"]["seconds"]["min"], summary["row-wise"]["seconds"]["min"]
        lines.append(f"| {name} | {t_old:.2f} s | {t_new:.2f} s | {t_new / t_old:.3f} | "
                     f"{fmt_ratio(summary['row-wise'])} |")
    finish(record)
    title, command = "Cost of row-wise randomness in impute_rows / score_rows", command_line()
    if args.out:
        print(write_results(args.out, "rowwise_cost", title, lines, {"rows": args.rows, "calls": rows}, record,
                            command))
    else:
        print(markdown(title, command, record, lines))


if __name__ == "__main__":
    main()
