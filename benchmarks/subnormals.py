"""Where denormal (subnormal) floats come from in a training step, what they cost, and what flushing them
to zero on the calling thread only (`torch.set_flush_denormal`) and on every intra-op thread
(`deepem.inference.denormals`, what the trainer and evaluation use) buys.

    python benchmarks/subnormals.py [--threads 2] [--k 50] [--batch 20] [--updates 0,300,1500]
                                    [--blocks 7] [--steps 8] [--out benchmarks/results]

Parts, all in one process, ratios within one interleaved run (load from other processes falls on every
mode alike):

1. Kernels: a (1000x200)@(200x784) product with ordinary operands and with operands whose products are
   denormal, and a sigmoid of denormal inputs, each with no flush, calling-thread flush, every-thread
   flush; and the share of a parallel element-wise op's denormal inputs that each mode flushes.
2. Training on real binarised MNIST (IWAE, deepem's TrainStep, 784-200-200-50): at each number of updates
   in --updates, one step is traced op by op (no flush) to count denormal values in every op's output and
   the matrix-product operand entries whose products are denormal, with the self-normalised weights'
   tails; then the step is timed in the three modes in interleaved blocks; and one step from the same
   state and random numbers is taken with and without flush, to show the change is float rounding.

Writes subnormals.md and subnormals.json under --out."""

from __future__ import annotations

import argparse
import copy
import os
import statistics
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from deepem.data.images import load_binarized_mnist
from deepem.inference.denormals import flush_denormals_everywhere, thread_wide_flush_supported
from deepem.methods import make_method
from deepem.models import ModelConfig, make_model
from deepem.training.step import TrainStep
from harness import Measure, command_line, contention, finish, interleaved_blocks, summarise, timer, write_results

TINY = torch.finfo(torch.float32).tiny
MATMULS = {"aten.mm.default", "aten.addmm.default", "aten.bmm.default", "aten.mv.default"}


@contextmanager
def calling_thread_flush() -> Iterator[None]:
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


MODES: dict[str, Callable[[], AbstractContextManager]] = {
    "no flush": nullcontext, "calling thread": calling_thread_flush, "every thread": flush_denormals_everywhere}


def interleaved(fn: Callable[[], object], n: int, blocks: int) -> dict[str, list[float]]:
    """Seconds per call of fn under each mode, per block, the mode order rotated between blocks."""
    for _ in range(3):  # warm-up: first calls allocate and fault in their buffers
        fn()

    def under(mode: str) -> Measure:
        def measure(calls: int) -> float:
            with MODES[mode]():
                fn()
                return timer(fn)(calls)
        return measure
    return interleaved_blocks({mode: under(mode) for mode in MODES}, blocks, calls=n)


def summary(times: dict[str, list[float]]) -> dict[str, float]:
    """Median ms per mode, and the median per-block ratio of no flush over each flush mode."""
    out = {f"{m} ms": statistics.median(t) * 1e3 for m, t in times.items()}
    for m in ("calling thread", "every thread"):
        out[f"speed-up {m}"] = summarise(times, m)["no flush"]["median"]
    return out


def kernels(blocks: int) -> dict[str, dict[str, float]]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 200, generator=g), torch.randn(200, 784, generator=g) * 1e-3
    tiny_a = a * 1e-36  # a's entries are normal numbers; their products with b are denormal
    sub = torch.full((1 << 20,), TINY / 4)
    rows = {"matmul, ordinary operands": summary(interleaved(lambda: a @ b, 20, blocks)),
            "matmul, denormal products": summary(interleaved(lambda: tiny_a @ b, 20, blocks)),
            "sigmoid of denormal inputs": summary(interleaved(lambda: sub.sigmoid(), 20, blocks))}
    for name, mode in MODES.items():
        with mode():
            rows.setdefault("share of a parallel op's denormal inputs flushed", {})[name] = (
                (sub * 1.0 == 0).double().mean().item())
    return rows


class DenormalCounter(TorchDispatchMode):
    """Per ATen op: values computed, denormal values in its outputs; per matrix product: operand entries
    whose product with the other operand's root-mean-square is denormal (0 < |a|·rms(b) < tiny)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[str, dict[str, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:  # a view shares its input's values: counted where they were computed
            return out
        name = str(func)
        row = self.ops.setdefault(name, {"values": 0, "denormal": 0, "denormal-product operands": 0})
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                row["values"] += t.numel()
                row["denormal"] += int(((t != 0) & (t.abs() < TINY)).sum())
        if name in MATMULS:
            mats = [t for t in args if isinstance(t, torch.Tensor) and t.dim() >= 1][-2:]
            if len(mats) == 2:
                for x, y in (mats, mats[::-1]):
                    rms = y.double().pow(2).mean().sqrt().item()
                    small = (x != 0) & (x.abs().double() * rms < TINY)
                    row["denormal-product operands"] += int(small.sum())
        return out


def weight_tails(log_w: torch.Tensor) -> dict[str, float]:
    w = torch.softmax(log_w.detach(), 0)
    return {"weights < 1e-30": (w < 1e-30).double().mean().item(), "weights == 0": (w == 0).double().mean().item(),
            "weights denormal": ((w != 0) & (w < TINY)).double().mean().item()}


def traced_step(step: TrainStep, x: torch.Tensor) -> dict:
    counter = DenormalCounter()
    with counter:
        out = step(x).output
    ops = {k: v for k, v in counter.ops.items() if v["denormal"] or v["denormal-product operands"]}
    return {"ops": ops, "denormal values": sum(v["denormal"] for v in counter.ops.values()),
            "denormal-product operand entries": sum(v["denormal-product operands"] for v in counter.ops.values()),
            **weight_tails(out.log_w)}


def agreement(step: TrainStep, x: torch.Tensor) -> dict[str, float]:
    """One step from the same state and random numbers with and without every-thread flush: the largest
    change in the loss and in any parameter, relative to its magnitude."""
    results = []
    for mode in (nullcontext, flush_denormals_everywhere):
        twin = copy.deepcopy(step)
        torch.manual_seed(1234)
        with mode():
            loss = sum(float(v.detach()) for v in twin(x).output.losses.values())
        results.append((loss, torch.cat([p.detach().flatten() for p in twin.model.parameters()])))
    (l0, p0), (l1, p1) = results
    return {"loss relative change": abs(l1 - l0) / max(abs(l0), 1e-30),
            "parameter max relative change": ((p1 - p0).abs() / p0.abs().clamp_min(1e-6)).max().item()}


def training(args: argparse.Namespace) -> list[dict]:
    data_dir = Path(os.environ.get("DEEPEM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    train = load_binarized_mnist(data_dir).train
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(train.shape[0], generator=g)
    batches = (train[order[(i * args.batch) % (len(order) - args.batch):][:args.batch]] for i in range(10**9))
    torch.manual_seed(0)
    model = make_model(ModelConfig(), train.shape[1])
    step = TrainStep(model, make_method("iwae", particles=args.k), lr=1e-3)
    done, rows = 0, []
    for target in sorted(int(u) for u in args.updates.split(",")):
        with flush_denormals_everywhere():
            while done < target:
                step(next(batches))
                done += 1
        x = next(batches)
        row = {"updates": done, "trace": traced_step(step, x), "agreement": agreement(step, x)}
        row["timing"] = summary(interleaved(lambda: step(next(batches)), args.steps, args.blocks))
        done += 3 * args.blocks * (args.steps + 1) + 1
        rows.append(row)
    return rows


def markdown(info: dict, kern: dict, train: list[dict]) -> str:
    modes = list(MODES)
    lines = [f"Every-thread flush available: "
             f"{info['thread_wide']}. Milliseconds are medians over blocks; speed-up = no flush / flush, median "
             "of per-block ratios.", "", "## Kernels", "",
             "| kernel | " + " | ".join(f"{m} ms" for m in modes)
             + " | speed-up calling thread | speed-up every thread |",
             "| --- | " + " | ".join("---" for _ in modes) + " | --- | --- |"]
    for name, r in kern.items():
        if "no flush ms" in r:
            lines.append(f"| {name} | " + " | ".join(f"{r[f'{m} ms']:.3f}" for m in modes)
                         + f" | {r['speed-up calling thread']:.2f} | {r['speed-up every thread']:.2f} |")
    share = kern["share of a parallel op's denormal inputs flushed"]
    lines += ["", "Share of a parallel element-wise op's denormal inputs flushed: "
              + ", ".join(f"{m} {share[m]:.2f}" for m in modes)
              + " (the calling thread's flag does not reach the intra-op workers).", "",
              f"## IWAE training on binarised MNIST, K={info['k']}, B={info['batch']}", "",
              "| updates | " + " | ".join(f"{m} ms" for m in modes)
              + " | speed-up calling thread | speed-up every thread | denormal values per step"
              " | denormal-product operand entries | weights < 1e-30 | weights == 0 | loss rel. change"
              " | parameter max rel. change |",
              "| --- | " + " | ".join("---" for _ in modes) + " | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in train:
        t, tr, a = r["timing"], r["trace"], r["agreement"]
        lines.append(f"| {r['updates']} | " + " | ".join(f"{t[f'{m} ms']:.2f}" for m in modes)
                     + f" | {t['speed-up calling thread']:.2f} | {t['speed-up every thread']:.2f}"
                     + f" | {tr['denormal values']} | {tr['denormal-product operand entries']}"
                     + f" | {tr['weights < 1e-30']:.1%} | {tr['weights == 0']:.1%}"
                     + f" | {a['loss relative change']:.1e} | {a['parameter max relative change']:.1e} |")
    lines += ["", "Ops with denormal outputs or denormal-product operands (updates: op: denormal outputs / "
              "denormal-product operand entries):", ""]
    for r in train:
        ops = ", ".join(f"{k} {v['denormal']}/{v['denormal-product operands']}" for k, v in r["trace"]["ops"].items())
        lines.append(f"- {r['updates']}: {ops or 'none'}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--updates", default="0,300,1500", help="comma-separated numbers of updates to measure at")
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per mode per block")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record = contention()
    info = {"threads": args.threads, "k": args.k, "batch": args.batch, "thread_wide": thread_wide_flush_supported()}
    kern = kernels(args.blocks)
    train = training(args)
    finish(record)
    title = f"Denormals in a training step ({args.threads} thread(s), torch {torch.__version__}, {record['cpu_model']})"
    print(write_results(args.out, "subnormals", title, markdown(info, kern, train),
                        {"info": info, "kernels": kern, "training": train}, record, command_line()))


if __name__ == "__main__":
    main()
