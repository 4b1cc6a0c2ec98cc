"""Training throughput of each architecture preset (mlp, mlp-2layer, conv), as a ratio to mlp.

    python benchmarks/architecture_throughput.py [--methods vae:k=1 iwae:k=5 iwem:k=5] [--batch 20]
        [--architectures mlp mlp-2layer conv] [--repeats 3] [--round-seconds 0.5] [--threads 1]
        [--out benchmarks/results]

Every (method, K) pair is timed with every architecture at the same batch: the trainer's own TrainStep
(guards included) on a fixed batch of binarised MNIST when DEEPEM_DATA points at it (else random bits
of MNIST's shape; throughput does not depend on the pixel values). As in method_throughput.py the
rounds are interleaved (each round times every architecture and method in turn, the order rotated, for the whole number
of steps that fills about `round_seconds`, at least one), and a figure is its fastest round: other jobs
only ever slow a round down. The load average is recorded at the start and the end.
Writes architecture_throughput.md and .json (machine info and the command) to --out."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deepem.methods import make_method
from deepem.models import ModelConfig, make_model
from deepem.training.step import TrainStep
from harness import command_line, contention, fastest_block, finish, interleaved_blocks, spread, timer, write_results
from method_throughput import load_data

D = 784
REFERENCE = "mlp"


def parse_method(spec: str) -> tuple[str, int]:
    """"iwae:k=5" -> ("iwae", 5); a bare name gets K = 1."""
    name, _, k = spec.partition(":k=")
    return name, int(k) if k else 1


class Runner:
    """One architecture and method with its own model and optimisers, stepping through a fixed batch."""

    def __init__(self, architecture: str, method: str, k: int, x: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.key = (architecture, f"{method}-k{k}")
        self.x = x
        model = make_model(ModelConfig(architecture=architecture), D, data_mean=x.mean(0))
        step = TrainStep(model, make_method(method, particles=k), lr=1e-3)
        self.run = timer(lambda: step(x))  # seconds per training step over n steps


def bench(architectures: list[str], methods: list[str], x: torch.Tensor, repeats: int,
          round_seconds: float) -> dict[str, dict[str, dict[str, float]]]:
    runners = [Runner(a, *parse_method(m), x) for m in methods for a in architectures]
    times = interleaved_blocks({r.key: r.run for r in runners}, repeats, target_seconds=round_seconds)
    out: dict[str, dict[str, dict[str, float]]] = {}
    nan = {"min": float("nan"), "median": float("nan")}
    for (arch, method), ts in times.items():
        ref = spread(times[(REFERENCE, method)]) if (REFERENCE, method) in times else nan
        fastest = fastest_block(spread(ts), ref, x.shape[0])
        out.setdefault(method, {})[arch] = {**fastest, "ratio_to_mlp": fastest["speed_vs_reference"]}
    return out


def table(results: dict[str, object]) -> list[str]:
    lines = [
        f"Training steps of batch B = {results['batch']} (data: {results['data']}); fastest of "
        f"{results['repeats']} interleaved rounds of about {results['round_seconds']} s (whole steps, at least "
        "one), after one warm-up step. Ratio = this architecture's steps per second / mlp's with the same "
        "method and K, in the same run. Spread = (max - min) / min round time.",
        "",
        "| method | architecture | s/step | points/s | ratio to mlp | spread |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method, by_arch in results["by_method"].items():
        for arch, r in by_arch.items():
            lines.append(f"| {method} | {arch} | {r['seconds_per_step']:.4f} | {r['points_per_sec']:.1f} | "
                         f"{r['ratio_to_mlp']:.3f} | {r['spread']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architectures", nargs="+", default=["mlp", "mlp-2layer", "conv"])
    parser.add_argument("--methods", nargs="+", default=["vae:k=1", "iwae:k=5", "iwem:k=5"],
                        help="NAME:k=K, each timed with every architecture")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--round-seconds", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, data = load_data(args.batch, "cpu")
    record = contention("cpu")
    results: dict[str, object] = {
        "batch": args.batch, "repeats": args.repeats, "round_seconds": args.round_seconds, "data": data,
        "architectures": args.architectures, "methods": args.methods,
    }
    start = time.perf_counter()
    results["by_method"] = bench(args.architectures, args.methods, x, args.repeats, args.round_seconds)
    results["seconds"] = time.perf_counter() - start
    finish(record)
    title = f"Architecture throughput (cpu, torch {torch.__version__}, {record['torch_threads']} threads)"
    print(write_results(args.out, "architecture_throughput", title, table(results), results, record,
                        command_line(argv)))


if __name__ == "__main__":
    main()
