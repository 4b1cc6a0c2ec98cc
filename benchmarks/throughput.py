"""Speed of deepem's training step and K = 5000 evaluation against the same IWAE written in plain PyTorch,
Pyro (SVI, RenyiELBO(alpha=0), vectorised particles) and pythae (IWAE), all in one process, plus REM,
IWEM and RWS steps against deepem's IWAE step at the same K.

    python benchmarks/throughput.py [--device cpu|cuda] [--blocks 7] [--threads 2] [--keep-freed-memory]
                                    [--out benchmarks/results]
    python benchmarks/throughput.py --precision bf16-mixed,bf16-mixed-head32 [--device ...] [--blocks ...]

Model: the 784-200-200-50 tanh MLPs of Burda et al. (2015), Bernoulli likelihood, random binary data of
MNIST's shape (throughput does not depend on the pixel values). Peers are optional (`pip install pyro-ppl
pythae`); those not installed are left out of the table.

Timing: `--blocks` blocks; in each, every contender runs a fixed number of whole steps (set after
warm-up to fill about 0.2 s), in a rotated order. A block's ratio is the contender's seconds per step over
deepem's in that block, so load from other processes falls on both alike; the table gives the median
ratio over blocks and its range (min–max), the load average before and after, and the machine's
measured matmul peak.

Allocator: by default malloc is left as it is, as in a user's own script. With --keep-freed-memory the
whole process runs with the setting the deepem command applies at start-up (training/allocator.py), so
every contender, the peers included, gets it; results go to throughput-keep.md. The two runs together show
how much of a ratio comes from page faults.

With --precision P[,P...] only the precision comparison runs (results: throughput-precision.md / .json):
deepem's IWAE step in float32 against the same step under each precision P (training/precision.py), the
plain PyTorch IWAE in float32 and the plain IWAE under torch.autocast to P's type, interleaved in blocks
as above, with deepem's float32 step as the reference (K = 50 with B = 20 and 100, K = 5 with B = 20).
Its accuracy is measured apart, untimed: benchmarks/precision_accuracy.py."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import torch

from deepem.training.allocator import keep_freed_memory
from deepem.training.precision import PrecisionError, check_precision
from harness import command_line, contention, finish, fmt_ratio, interleaved_blocks, summarise, timer, write_results
from peers import (
    D,
    available_peers,
    deepem_evaluation,
    deepem_step,
    evaluation_flops,
    plain_evaluation,
    plain_step,
    training_flops,
)

METHODS_AGAINST_IWAE = ("rem-v1", "iwem", "rws")


def measures(contenders: dict[str, Callable[[], object]], device: str) -> dict:
    return {name: timer(fn, device) for name, fn in contenders.items()}


def aten_calls(fn: Callable[[], object], steps: int = 3) -> float:
    """ATen calls per call of fn (every aten:: event of torch.profiler, nested calls and views included, as
    profile_step.py and step_overhead.py count them): the per-step overhead, independent of machine load."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::")) / steps


def matmul_peak(device: str, n: int = 2048) -> float:
    """Measured float32 matmul GFLOP/s (fastest of 5): the ceiling this hardware offers to dense layers."""
    a = torch.randn(n, n, device=device)
    a @ a
    return 2 * n**3 / min(timer(lambda: a @ a, device)(1) for _ in range(5)) / 1e9


def bench_training(device: str, k: int, batch: int, n_blocks: int) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.bernoulli(torch.full((batch, D), 0.13, device=device), generator=g)
    torch.manual_seed(0)
    contenders = {"deepem": deepem_step(x, k)}
    contenders.update({name: make(x, k) for name, make in available_peers().items()})
    contenders.update({f"deepem {m}": deepem_step(x, k, m) for m in METHODS_AGAINST_IWAE})
    summary = summarise(interleaved_blocks(measures(contenders, device), n_blocks), "deepem")
    for name, fn in contenders.items():
        summary[name]["aten_calls_per_step"] = aten_calls(fn)
    flops = training_flops(k, batch)
    return {"k": k, "batch": batch, "contenders": summary,
            "deepem_points_per_sec": batch / summary["deepem"]["seconds_per_call"],
            "deepem_gflops": flops / summary["deepem"]["seconds_per_call"] / 1e9}


def bench_evaluation(device: str, k: int, points: int, batch: int, n_blocks: int) -> dict:
    x = torch.bernoulli(torch.full((points, D), 0.13, device=device))
    contenders = {"deepem": deepem_evaluation(x, k, batch), "plain": plain_evaluation(x, k, batch)}
    summary = summarise(interleaved_blocks(measures(contenders, device), n_blocks), "deepem")
    return {"k": k, "points": points, "contenders": summary,
            "deepem_points_per_sec": points / summary["deepem"]["seconds_per_call"],
            "deepem_gflops": evaluation_flops(k, points) / summary["deepem"]["seconds_per_call"] / 1e9}


def seeded(make: Callable[..., Callable[[], object]], *args: object) -> Callable[[], object]:
    """make(*args) from the same initial weights for every contender."""
    torch.manual_seed(0)
    return make(*args)


def bench_precision(device: str, precisions: list[str], k: int, batch: int, n_blocks: int) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.bernoulli(torch.full((batch, D), 0.13, device=device), generator=g)
    contenders = {"deepem 32": seeded(deepem_step, x, k, "iwae", "32"), "plain 32": seeded(plain_step, x, k)}
    for p in precisions:
        contenders[f"deepem {p}"] = seeded(deepem_step, x, k, "iwae", p)
        dtype = check_precision(p, device).compute
        if f"plain {dtype}" not in contenders:
            contenders[f"plain {dtype}"] = seeded(plain_step, x, k, dtype)
    summary = summarise(interleaved_blocks(measures(contenders, device), n_blocks), "deepem 32")
    return {"k": k, "batch": batch, "contenders": summary}


def results_stem(args: argparse.Namespace, name: str) -> str:
    """throughput[-precision][-cuda0][-keep]: one file pair per device and allocator setting."""
    return name + ("" if args.device == "cpu" else f"-{args.device.replace(':', '')}") + (
        "-keep" if args.keep_freed_memory else "")


def precision_main(args: argparse.Namespace) -> None:
    """The --precision comparison alone: its table and JSON."""
    precisions = [p for p in args.precision.split(",") if p != "32"]
    record = contention(args.device)
    rows = [bench_precision(args.device, precisions, k, b, args.blocks) for k, b in ((50, 20), (50, 100), (5, 20))]
    finish(record)
    names = list(rows[0]["contenders"])
    lines = ["Seconds per IWAE step as a multiple of deepem's float32 step, median over "
             f"{args.blocks} interleaved blocks (range in brackets); below 1 is faster. 'plain': the same IWAE "
             "in plain PyTorch, in float32 or with its forward pass under torch.autocast.", "",
             "| workload | deepem float32 s/step | " + " | ".join(names[1:]) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names[1:]) + " |"]
    for r in rows:
        c = r["contenders"]
        lines.append(f"| K={r['k']}, B={r['batch']} | {c['deepem 32']['seconds_per_call'] * 1e3:.1f} ms | "
                     + " | ".join(fmt_ratio(c[n]) for n in names[1:]) + " |")
    title = f"Throughput by precision ({args.device}, torch {torch.__version__}, {record['torch_threads']} threads)"
    print(write_results(args.out, results_stem(args, "throughput-precision"), title, lines, {"train": rows}, record,
                        command_line()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="run every contender with deepem's allocator setting (training/allocator.py)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--precision", default=None, metavar="P[,P...]",
                        help="only compare deepem's step under these precisions with float32 (and plain PyTorch)")
    args = parser.parse_args()
    if args.keep_freed_memory and not keep_freed_memory():
        parser.error("--keep-freed-memory needs Linux with glibc")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.precision:
        try:
            for p in args.precision.split(","):
                check_precision(p, args.device)
        except PrecisionError as err:  # one line where this machine cannot run it
            parser.error(str(err))
        precision_main(args)
        return
    record = contention(args.device)
    peak = matmul_peak(args.device)
    train = [bench_training(args.device, k, b, args.blocks) for k, b in ((50, 20), (50, 100), (5, 20))]
    evaluation = [bench_evaluation(args.device, 5000, 20, 10, args.blocks)]
    finish(record)
    for row in train + evaluation:
        row["fraction_of_peak"] = row["deepem_gflops"] / peak
    info = {"matmul_peak_gflops": peak, "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "keep_freed_memory": args.keep_freed_memory}
    peers = [p for p in ("plain", "pyro", "pythae") if p in train[0]["contenders"]]
    allocator = ("deepem's allocator setting for every contender" if args.keep_freed_memory
                 else "malloc as it is")
    lines = [f"Measured float32 matmul peak: {peak:.1f} GFLOP/s.", "",
             "Speed-up of deepem = the peer's seconds per step / deepem's, median over "
             f"{args.blocks} interleaved blocks (range in brackets); above 1, deepem is faster.", "",
             "| workload | deepem points/s | " + " | ".join(f"vs {p}" for p in peers)
             + " | GFLOP/s | of peak | ATen calls per step (deepem; " + ", ".join(peers) + ") |",
             "| --- | --- | " + " | ".join("---" for _ in peers) + " | --- | --- | --- |"]
    for r in train:
        c = r["contenders"]
        lines.append(f"| IWAE train step, K={r['k']}, B={r['batch']} | {r['deepem_points_per_sec']:.0f} | "
                     + " | ".join(fmt_ratio(c[p]) for p in peers)
                     + f" | {r['deepem_gflops']:.1f} | {r['fraction_of_peak']:.0%} | "
                     + "; ".join(f"{c[n]['aten_calls_per_step']:.0f}" for n in ["deepem", *peers]) + " |")
    for r in evaluation:
        c = r["contenders"]
        lines.append(f"| IW evaluation, K={r['k']} | {r['deepem_points_per_sec']:.1f} | {fmt_ratio(c['plain'])} | "
                     + "".join("– | " for _ in peers[1:])
                     + f"{r['deepem_gflops']:.1f} | {r['fraction_of_peak']:.0%} | – |")
    lines += ["", "Other methods' steps, seconds per step as a multiple of deepem's IWAE step at the same K "
              "(goal: within 1.3):", "",
              "| workload | " + " | ".join(METHODS_AGAINST_IWAE) + " |",
              "| --- | " + " | ".join("---" for _ in METHODS_AGAINST_IWAE) + " |"]
    for r in train:
        c = r["contenders"]
        lines.append(f"| K={r['k']}, B={r['batch']} | "
                     + " | ".join(fmt_ratio(c[f"deepem {m}"]) for m in METHODS_AGAINST_IWAE) + " |")
    title = f"Throughput ({args.device}, torch {torch.__version__}, {record['torch_threads']} threads, {allocator})"
    print(write_results(args.out, results_stem(args, "throughput"), title, lines,
                        {"info": info, "train": train, "evaluation": evaluation}, record, command_line()))


if __name__ == "__main__":
    main()
