"""Training throughput of every registered method, as a ratio to IWAE measured in the same run.

    python benchmarks/method_throughput.py [--device cpu|cuda] [--k 50] [--batches 20 100]
        [--repeats 10] [--round-seconds 0.15] [--threads N] [--methods iwae rem-v1 ...]
        [--out benchmarks/results]

Model: the 784-200-200-50 tanh MLPs of Burda et al. (2015) with a Bernoulli likelihood. Data: binarised
MNIST when DEEPEM_DATA points at it, else random binary data of MNIST's shape (throughput does not
depend on the pixel values). Every method gets `particles=K` and its other options at their defaults.

To keep a shared or throttling machine fair to all methods, the repeats are interleaved: each round
times every method in turn, for as many steps as fill about `round_seconds` (at least one; the count is
fixed per method after warm-up, so slow methods such as AIWAE do not dominate the run time), and a
method's figure is its fastest round (other jobs only ever slow a round down, so the minimum is the
steadiest estimate of the code's own speed; the median is recorded too). On a machine shared with other
jobs, --threads 1 gives far steadier ratios than several threads, whose synchronisation suffers most
from time-slicing.
Writes method_throughput.md and method_throughput.json (with machine info and the command) to --out."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from deepem.inference.numerics import flush_denormals
from deepem.methods import METHODS, make_method
from deepem.models import ModelConfig, make_model
from deepem.training.step import TrainStep

D = 784
REFERENCE = "iwae"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


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

    def run(self, steps: int) -> float:
        """Seconds per training step over `steps` steps, denormals flushed on every thread as in Trainer.fit."""
        sync(self.device)
        start = time.perf_counter()
        with flush_denormals():
            for _ in range(steps):
                self.step(self.x)
        sync(self.device)
        return (time.perf_counter() - start) / steps


def bench(methods: list[str], k: int, batch: int, x_all: torch.Tensor, device: str, repeats: int,
          round_seconds: float, warmup: int = 2) -> dict[str, dict[str, float]]:
    x = x_all[:batch]
    runners = [Runner(name, k, x, device) for name in methods]
    steps = {}
    for r in runners:
        r.run(warmup)
        steps[r.name] = max(1, round(round_seconds / r.run(1)))
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(repeats):
        for r in runners:
            times[r.name].append(r.run(steps[r.name]))
    ref, ref_median = min(times[REFERENCE]), statistics.median(times[REFERENCE])
    out = {}
    for name, ts in times.items():
        t, t_median = min(ts), statistics.median(ts)
        out[name] = {
            "seconds_per_step": t,
            "steps_per_sec": 1 / t,
            "points_per_sec": batch / t,
            "ratio_to_iwae": ref / t,
            "median_seconds_per_step": t_median,
            "median_ratio_to_iwae": ref_median / t_median,
            "steps_per_round": steps[name],
            "spread": (max(ts) - min(ts)) / t,  # (max - min) / min over rounds: the noise level
        }
    return out


def machine_info(device: str) -> dict[str, object]:
    info: dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def write_results(results: dict[str, object], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "method_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    info = results["machine"]
    lines = [
        f"# Method throughput ({info['device']}, torch {info['torch']}, {info['torch_threads']} threads)",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Model 784-200-200-50 tanh, Bernoulli; K = {results['k']}; data: {results['data']}. "
        f"Fastest of {results['repeats']} interleaved rounds of about {results['round_seconds']} s each "
        "(whole steps), after warm-up. "
        "Ratio = this method's training steps per second / IWAE's, in the same run (higher is faster). "
        "Median ratio: the same from median round times. Spread = (max - min) / min round time.",
        "",
        f"Machine: {info['processor']}, {info['cpu_count']} CPUs, {info['platform']}, "
        f"load average at start {info.get('load_average_at_start')}.",
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
    (out_dir / "method_throughput.md").write_text("\n".join(lines) + "\n")


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
    results: dict[str, object] = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) if argv is None
        else "main(" + repr(argv) + ")",
        "machine": machine_info(args.device),
        "k": args.k, "repeats": args.repeats, "round_seconds": args.round_seconds, "data": data, "methods": methods,
        "by_batch": {},
    }
    for batch in args.batches:
        start = time.perf_counter()
        results["by_batch"][str(batch)] = bench(methods, args.k, batch, x_all, args.device,
                                                args.repeats, args.round_seconds)
        print(f"B={batch}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    write_results(results, args.out)
    print((args.out / "method_throughput.md").read_text())


if __name__ == "__main__":
    main()
