"""Cost of row-wise randomness (evaluation/own_rows.py) against one generator in row order (the
evaluation's impute / observed_log_likelihood, what impute_rows and score_rows called before): a
1000-row, 10-column table with 30% missing, the scikit-learn estimators' model (3 x 128 tanh MLPs,
9 Gaussian latents, float32), K = 1000, batches of 100 rows. Run with OMP_NUM_THREADS=1:

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/rowwise_cost.py

Prints the best of `--repeats` CPU times of each (process time: the machine is shared) and the ratio
row-wise / row order."""

from __future__ import annotations

import argparse
import time

import torch

from deepem.evaluation.imputation import impute
from deepem.evaluation.observed_loglik import observed_log_likelihood
from deepem.evaluation.own_rows import impute_rows, score_rows
from deepem.models import ModelConfig, make_model


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
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
    print(f"torch threads: {torch.get_num_threads()}, rows: {args.rows}")
    for name, (old, new) in pairs.items():
        t_old, t_new = float("inf"), float("inf")
        for _ in range(args.repeats):  # interleaved, so that a busy spell on a shared machine hits both
            t_old, t_new = min(t_old, best_of(1, old)), min(t_new, best_of(1, new))
        print(f"{name}: row order {t_old:.2f} s, row-wise {t_new:.2f} s, ratio {t_new / t_old:.3f}")


if __name__ == "__main__":
    main()
