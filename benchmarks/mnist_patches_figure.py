"""The IWEM paper's Figure 5 analogue: completion of test images with N of their nine 3x3 patches removed,
by each method of a `benchmarks/scripts/mnist_patches.sh` comparison. Rows, each labelled: observed (missing
pixels orange), ground truth, then each method's single imputation in blue (self-normalised IS mean of
the pixel probabilities, K particles); columns: --points test images of the corrupted test copy, every --every-th
(the test file's first images are mostly zeros).

    python benchmarks/mnist_patches_figure.py runs/mnist-patches/patches6 [--points 8] [--every 1250]

The runs are only read (nothing is written into them). Writes benchmarks/results/mnist_patches_imputation.png
and prints each method's mse over the missing pixels of those images."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from deepem.data.corruption import CorruptedData
from deepem.report.imputation import imputation_chart
from deepem.workflows.impute import imputation_with_baselines
from deepem.workflows.loading import load_trained_run


def every_test_point(corrupted: CorruptedData, every: int) -> CorruptedData:
    """The corrupted data with its test split (and test mask) thinned to every `every`-th point."""
    s, c = corrupted.splits, corrupted.complete
    return dataclasses.replace(corrupted, splits=dataclasses.replace(s, test=s.test[::every],
                                                                     test_mask=s.test_mask[::every]),
                               complete=dataclasses.replace(c, test=c.test[::every]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparison", help="a compare folder of mnist_patches.sh (one run per method)")
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--every", type=int, default=1250, help="show test points 0, E, 2E, ...")
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "mnist_patches_imputation.png"))
    a = parser.parse_args()
    torch.set_num_threads(1)
    runs = sorted(p for p in Path(a.comparison).iterdir() if (p / "config.json").is_file())
    order = {"miwae": 0, "miss-iwem-woa": 1}  # missIWAE, then miss-IWEM-woa, then miss-IWEM (the paper's order)
    runs.sort(key=lambda p: order.get(p.name, 2))
    imputed: dict[str, torch.Tensor] = {}
    steps = []
    for run in runs:
        trained = load_trained_run(run, data_dir=a.data_dir, warn=lambda s: None)
        if trained.corrupted is None or trained.data.image_shape is None:
            continue
        corrupted = every_test_point(trained.corrupted, a.every)
        summary, result = imputation_with_baselines(trained.model, corrupted, "test", a.particles,
                                                    seed=a.seed, baselines=(), limit=a.points)
        if not imputed:  # observed and truth: the same masks for every run of the comparison (one missing seed)
            mask = corrupted.splits.mask("test")[: a.points]
            truth = corrupted.complete.split("test")[: a.points]
            shape, spec = trained.data.image_shape, trained.config.missing
        imputed[trained.config.method] = result.imputed.clamp(0, 1)
        steps.append(f"{trained.config.method} step {trained.step}")
        print(f"{run.name}: mse over the {summary['n_missing']} missing pixels of {a.points} test images "
              f"{summary['model']['mse']:.4f} (K = {a.particles})")
    title = f"{spec}, K = {a.particles}: parameters of " + ", ".join(steps)
    imputation_chart(truth, mask, imputed, shape, Path(a.out), title=title)
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
