"""Training throughput of every registered method, as a ratio to IWAE measured in the same run.

    python benchmarks/method_throughput.py [--device cpu|cuda] [--k 50] [--batches 20 100]
        [--repeats 10] [--round-seconds 0.15] [--threads N] [--methods iwae rem-v1 ...]
        [--out benchmarks/results]

Model: the 784-200-200-50 tanh MLPs of Burda et al. (2015) with a Bernoulli likelihood. Data: binarised
MNIST when DEEPEM_DATA points at it, else random binary data of MNIST's shape (throughput does not
depend on the pixel values). Every method gets `particles=K` and its other options at their defaults.

To keep a shared or throttling machine fair to all methods, the repeats are interleaved: each round
times every method in turn (the order rotated from round to round), for as many steps as fill about
`round_seconds` (at least one; the count is fixed per method after warm-up, so slow methods such as
AIWAE do not dominate the run time), and a method's figure is its fastest round (other jobs only ever
slow a round down, so the minimum is the steadiest estimate of the code's own speed; the median is
recorded too). On a machine shared with other jobs, --threads 1 gives far steadier ratios than several
threads, whose synchronisation suffers most from time-slicing.
Writes method_throughput.md and method_throughput.json (with the command and the contention record,
benchmarks/harness.py) to --out."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from deepem.inference.numerics import flush_denormals
from deepem.methods import METHODS, make_method
from deepem.models import ModelConfig, make_model
from deepem.training.step import TrainStep
from harness import command_line, contention, fastest_block, finish, interleaved_blocks, summarise, timer, write_results

D = 784
REFERENCE = "iwae"


def load_data(n: int, device: str) -> tuple[torch.Tensor, str]:
    """n binary images: binarised MNIST's training split if DEEPEM_DATA is set, else random bits."""
    if os.environ.get("DEEPEM_DATA"):
        from deepem.data.registry import load_dataset

        train = load_dataset("binarized-mnist", download=False).train[:n]
        return train.to(device), "binarized-mnist (first training images)"
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, D), 0.13), generator=g).to(device), "random binary, pixel mean 0.13"


class Runner:
    """One method with its own model and optimisers, stepping through a fixed batch."""

    def __init__(self, name: str, k: int, x: torch.Tensor, device: str) -> None:
        torch.manual_seed(0)
        self.name = name
        self.x = x
        self.device = device
        self.model = make_model(ModelConfig(), D, data_mean=x.mean(0).cpu()).to(device)
        self.method = make_method(name, particles=k)
        self.method.bind(self.model)  # as the trainer does: methods that own networks build them here
        self.method.to(device)
        self.step = TrainStep(self.model, self.method, lr=1e-3)  # the trainer's own step, guards included
        self.measure = timer(lambda: self.step(self.x), device)

    def run(self, steps: int) -> float:
        """Seconds per training step over `steps` steps, denormals flushed on every thread as in Trainer.fit."""
        with flush_denormals():
            return self.measure(steps)


def bench(methods: list[str], k: int, batch: int, x_all: torch.Tensor, device: str, repeats: int,
          round_seconds: float) -> dict[str, dict[str, float]]:
    x = x_all[:batch]
    runners = {name: Runner(name, k, x, device) for name in methods}
    for r in runners.values():
        r.run(1)  # a first step beyond the warm-up the harness gives: optimiser state, caches
    summary = summarise(interleaved_blocks({name: r.run for name, r in runners.items()}, repeats,
                                           target_seconds=round_seconds), REFERENCE)
    out = {}
    for name, s in summary.items():
        fastest = fastest_block(s["seconds"], summary[REFERENCE]["seconds"], batch)
        out[name] = {**fastest, "ratio_to_iwae": fastest["speed_vs_reference"],
                     "median_ratio_to_iwae": fastest["median_speed_vs_reference"],
                     "block_ratio": s}  # seconds / IWAE's, round by round: median, range, quartiles
    return out


def table(results: dict[str, object]) -> list[str]:
    lines = [
        f"Model 784-200-200-50 tanh, Bernoulli; K = {results['k']}; data: {results['data']}. "
        f"Fastest of {results['repeats']} interleaved rounds of about {results['round_seconds']} s each "
        "(whole steps), after warm-up. "
        "Ratio = this method's training steps per second / IWAE's, in the same run (higher is faster). "
        "Median ratio: the same from median round times. Spread = (max - min) / min round time.",
        "",
    ]
    batches = list(results["by_batch"])
    header = "| method | " + " | ".join(
        f"B={b} points/s | B={b} ratio to IWAE | B={b} median ratio | B={b} spread" for b in batches) + " |"
    lines += [header, "|" + " --- |" * (1 + 4 * len(batches))]
    for name in results["methods"]:
        cells = []
        for b in batches:
            r = results["by_batch"][b][name]
            cells += [f"{r['points_per_sec']:.0f}", f"{r['ratio_to_iwae']:.2f}",
                      f"{r['median_ratio_to_iwae']:.2f}", f"{r['spread']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--round-seconds", type=float, default=0.15,
                        help="time per method and round (whole steps, at least one)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; registered: {', '.join(METHODS)}")
    if REFERENCE not in methods:
        methods = [REFERENCE, *methods]
    x_all, data = load_data(max(args.batches), args.device)
    record = contention(args.device)
    results: dict[str, object] = {
        "k": args.k, "repeats": args.repeats, "round_seconds": args.round_seconds, "data": data, "methods": methods,
        "by_batch": {},
    }
    for batch in args.batches:
        start = time.perf_counter()
        results["by_batch"][str(batch)] = bench(methods, args.k, batch, x_all, args.device,
                                                args.repeats, args.round_seconds)
        print(f"B={batch}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    finish(record)
    title = f"Method throughput ({args.device}, torch {torch.__version__}, {record['torch_threads']} threads)"
    print(write_results(args.out, "method_throughput", title, table(results), results, record, command_line(argv)))


if __name__ == "__main__":
    main()
