"""Where the time of an IWAE training step and of K = 5000 evaluation goes, deepem's and plain PyTorch's, by
kind of work: matrix products, element-wise passes, the optimiser, and everything else (small ops,
autograd, Python); with the number of ATen calls and the rate the matrix products reach.

    python benchmarks/profile_step.py [--threads 1] [--steps 20] [--keep-freed-memory] [--out benchmarks/results]
    python benchmarks/profile_step.py --precision bf16-mixed     # training only: where the mixed step's time goes

It says how far a step can get faster without changing what is computed: the matrix products (the
same FLOPs in every implementation) are a floor, so total / matmul time bounds the speed-up that any
amount of work on the rest can give. Writes step_profile.md and step_profile.json (step_profile-keep.* with
--keep-freed-memory: both implementations with the allocator setting the deepem command applies).

With --precision P the training workloads are profiled four ways: deepem's step in float32 and under P
(training/precision.py), plain PyTorch in float32 and with its forward pass under torch.autocast to P's type;
the isolated products are timed in float32 and in P's type (the floor of each), and the dtype conversions
autocast adds (aten::copy_ and aten::_to_copy) get a column of their own. Writes step_profile-P.md/.json."""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from deepem.training.allocator import keep_freed_memory
from deepem.training.precision import PrecisionError, check_precision
from harness import call_seconds, command_line, contention, finish, timer, write_results
from peers import (
    D,
    H,
    Z,
    deepem_evaluation,
    deepem_step,
    evaluation_flops,
    plain_evaluation,
    plain_step,
    training_flops,
)
from subnormals import DenormalCounter
from throughput import matmul_peak

EVAL_K, EVAL_POINTS = 5000, 4

KINDS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::mv", "aten::addmv_", "aten::baddbmm"),
    "transcendental element-wise": ("aten::log", "aten::log_", "aten::sigmoid", "aten::sigmoid_", "aten::tanh",
                                    "aten::exp", "aten::exp_", "aten::log_sigmoid_forward", "aten::softplus",
                                    "aten::log1p", "aten::tanh_backward", "aten::sigmoid_backward",
                                    "aten::log_sigmoid_backward"),
    "optimiser": ("aten::_fused_adam_", "aten::lerp_", "aten::addcdiv_", "aten::addcmul_",
                  "aten::sqrt"),
    "random numbers": ("aten::normal_",),
    "dtype conversions, copies": ("aten::copy_", "aten::_to_copy"),
}


def kind_of(name: str) -> str:
    if name.startswith("aten::_foreach_"):
        return "optimiser"
    for kind, names in KINDS.items():
        if name in names:
            return kind
    return "other element-wise, small ops, autograd"


def profile_step(step, steps: int) -> tuple[dict[str, float], float]:
    """Milliseconds per step by kind of op, and ATen calls per step (nested ones, views included)."""
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals: dict[str, float] = {}
    calls = 0
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            kind = kind_of(event.key)
            totals[kind] = totals.get(kind, 0.0) + event.self_cpu_time_total / steps / 1e3
            calls += event.count
    return totals, calls / steps


def product_shapes(k: int, batch: int, training: bool) -> list[tuple[int, int, int]]:
    """(rows, inner, columns) of every matrix product of a step of the 784-200-200-50 IWAE: each layer's
    forward product, and in training its grad-input (all but the encoder's first layer: x needs no
    gradient) and grad-weight products."""
    shapes = []
    for rows, layers in ((batch, ((D, H), (H, H), (H, 2 * Z))), (k * batch, ((Z, H), (H, H), (H, D)))):
        for i, (n_in, n_out) in enumerate(layers):
            shapes.append((rows, n_in, n_out))
            if training:
                if not (rows == batch and i == 0):
                    shapes.append((rows, n_out, n_in))  # grad-input: (M x out) @ (out x in)
                shapes.append((n_out, rows, n_in))  # grad-weight: (out x M) @ (M x in)
    return shapes


def isolated_products_ms(shapes: list[tuple[int, int, int]], repeats: int = 5,
                         dtype: torch.dtype = torch.float32) -> float:
    """Milliseconds the step's matrix products take as raw torch.mm calls on their own, with ordinary
    (normal, random) operands in `dtype`: the physical floor, fastest of `repeats` rounds."""
    g = torch.Generator().manual_seed(0)
    operands = [(torch.randn(m, n, generator=g).to(dtype), torch.randn(n, c, generator=g).to(dtype))
                for m, n, c in shapes]
    outs = [torch.empty(m, c, dtype=dtype) for m, _, c in shapes]

    def products() -> None:
        for (a, b), out in zip(operands, outs, strict=True):
            torch.mm(a, b, out=out)
    return min(call_seconds(products, repeats + 1)) * 1e3


def denormals_per_step(step) -> int:
    """Denormal float32 values that the step's ops compute (views not counted), one step traced."""
    counter = DenormalCounter()
    with counter:
        step()
    return sum(v["denormal"] for v in counter.ops.values())


def wall_ms(step, steps: int) -> tuple[float, float]:
    """Milliseconds and minor page faults per step."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = timer(step)(steps)
    return seconds * 1e3, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="both implementations with deepem's allocator setting (training/allocator.py)")
    parser.add_argument("--precision", default=None, metavar="P",
                        help="profile training under this mixed precision beside float32 (training/precision.py)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.keep_freed_memory and not keep_freed_memory():
        parser.error("--keep-freed-memory needs Linux with glibc")
    compute = None
    if args.precision:
        try:
            compute = check_precision(args.precision, "cpu").compute
        except PrecisionError as err:
            parser.error(str(err))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    record = contention()
    peak = matmul_peak("cpu")
    workloads = []
    for k, b in ((50, 20), (50, 100), (5, 20)):
        x = torch.bernoulli(torch.full((b, D), 0.13))
        implementations = {"deepem": deepem_step(x, k), "plain": plain_step(x, k)}
        if compute is not None:
            implementations = {"deepem": implementations["deepem"],
                               f"deepem {args.precision}": deepem_step(x, k, precision=args.precision),
                               "plain": implementations["plain"], "plain autocast": plain_step(x, k, autocast=compute)}
        workloads.append((f"train K={k}, B={b}", training_flops(k, b), args.steps, product_shapes(k, b, True),
                          implementations))
    x = torch.bernoulli(torch.full((EVAL_POINTS, D), 0.13))
    if compute is None:
        workloads.append((f"evaluate K={EVAL_K}, {EVAL_POINTS} points", evaluation_flops(EVAL_K, EVAL_POINTS),
                          max(1, args.steps // 10), product_shapes(EVAL_K, EVAL_POINTS, False),
                          {"deepem": deepem_evaluation(x, EVAL_K, EVAL_POINTS),
                           "plain": plain_evaluation(x, EVAL_K, EVAL_POINTS)}))
    rows = []
    for workload, flops, steps, shapes, implementations in workloads:
        isolated = isolated_products_ms(shapes)
        isolated_mixed = isolated_products_ms(shapes, dtype=compute) if compute is not None else None
        for name, step in implementations.items():
            kinds, calls = profile_step(step, steps)
            wall, faults = min(wall_ms(step, steps) for _ in range(3))
            kinds["Python, dispatch, autograd (wall - ops)"] = max(0.0, wall - sum(kinds.values()))
            rows.append({"workload": workload, "implementation": name, "wall_ms": wall, "ms_by_kind": kinds,
                         "page_faults_per_step": faults, "aten_calls_per_step": calls,
                         "isolated_products_ms": (isolated_mixed if isolated_mixed is not None
                                                  and name.endswith((args.precision, "autocast")) else isolated),
                         "denormals_per_step": denormals_per_step(step),
                         "matmul_gflops": flops / max(kinds.get("matrix products", 0.0), 1e-9) / 1e6})
    finish(record)
    kinds = list(KINDS) + ["other element-wise, small ops, autograd", "Python, dispatch, autograd (wall - ops)"]
    allocator = "deepem's allocator setting" if args.keep_freed_memory else "malloc as it is"
    lines = [f"Measured float32 matmul peak: {peak:.1f} GFLOP/s. Milliseconds per step (one evaluation step: "
             f"all {EVAL_POINTS} points; "
             "profiler self time per kind of op; the Python column is wall time minus the ops' time). "
             "Matmul GFLOP/s = the workload's matrix-product FLOPs / the profiled matrix-product time. "
             "Bound = wall / matrix products: the speed-up left if all but the matrix products were free. "
             "Isolated products = the same shapes (forward, grad-input, grad-weight of every layer) as raw "
             "torch.mm calls on their own with ordinary operands, fastest of 5 rounds: the physical floor; "
             "physical bound = wall / isolated products (under a mixed precision: the products in its type). "
             "Denormals = float32 denormal values the step's ops "
             "compute (views not counted; deepem's step flushes on every thread, as Trainer.fit does).", "",
             "| workload | implementation | wall ms | page faults | ATen calls | " + " | ".join(kinds)
             + " | matmul GFLOP/s (of peak) | bound | isolated products ms | physical bound | denormals |",
             "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in kinds) + " | --- | --- | --- | --- | --- |"]
    for r in rows:
        m = r["ms_by_kind"]
        lines.append(f"| {r['workload']} | {r['implementation']} | {r['wall_ms']:.2f} | "
                     f"{r['page_faults_per_step']:.0f} | {r['aten_calls_per_step']:.0f} | "
                     + " | ".join(f"{m.get(kd, 0.0):.2f}" for kd in kinds)
                     + f" | {r['matmul_gflops']:.1f} ({r['matmul_gflops'] / peak:.0%})"
                     + f" | {r['wall_ms'] / max(m.get('matrix products', 1e-9), 1e-9):.2f}"
                     + f" | {r['isolated_products_ms']:.2f} | {r['wall_ms'] / r['isolated_products_ms']:.2f}"
                     + f" | {r['denormals_per_step']} |")
    title = f"Where an IWAE step's time goes ({args.threads} thread(s), torch {torch.__version__}, {allocator})"
    name = "step_profile-keep" if args.keep_freed_memory else "step_profile"
    if args.precision:
        name += f"-{args.precision}"
    print(write_results(args.out, name, title, lines, {"threads": args.threads,
                                                       "keep_freed_memory": args.keep_freed_memory,
                                                       "matmul_peak_gflops": peak, "rows": rows}, record,
                        command_line()))


if __name__ == "__main__":
    main()
