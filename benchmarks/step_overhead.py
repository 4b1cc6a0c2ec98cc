"""What a training step costs beyond its arithmetic, in deterministic counts: ATen calls per step, bytes
allocated per step, and element-wise passes over the (K, B, D) logits, for every method's trainer step
(training/step.py: guards and fused Adam included), here and, with --baseline, at another git revision.

    python benchmarks/step_overhead.py [--baseline REV] [--steps 4] [--timing BLOCKS] [--callgrind]
                                       [--out benchmarks/results]

Counts do not depend on the load of the machine (wall-clock times on a shared machine do), so they are
what this script reports; `profile_step.py` and `throughput.py` give times on a quiet machine. With
--baseline REV, the library's source at REV (`git archive REV src`) is counted in a subprocess, beside
the working tree's, so a change is judged by one command. Writes step_overhead.md and step_overhead.json.

With --baseline, two secondary checks: --timing BLOCKS times IWAE steps of both sources in two live
worker processes, alternating blocks (the ratio of each block's seconds per step, median and range, with
the load average: on a shared machine only the ratio means anything); --callgrind counts the instructions
of a step under valgrind (10 steps minus none, IWAE K = 5, B = 20; slow: minutes per run).

ATen calls: every aten:: event of torch.profiler, nested calls and views included (profile_step.py counts
the same way). Bytes: the sum of the CPU allocations made by ATen calls during the steps. Passes over (K, B, D):
leaf ATen calls (no ATen call inside them) other than views and matrix products that read or write a
tensor of K·B·D entries."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from harness import Measure, command_line, contention, finish, interleaved_blocks, summarise, timer, write_results

D = 784
#: the library source of the tree this script is in ("after")
TREE_SRC = Path(__file__).resolve().parent.parent / "src"
#: (method, K, B): IWAE at the three sizes of the issue, every other method at K = 5 and 50, B = 20
CASES = [("iwae", 5, 20), ("iwae", 50, 20), ("iwae", 50, 100)] + [
    (m, k, 20) for m in ("rem-v1", "iwem", "rws", "vimco", "miss-iwem") for k in (5, 50)]
#: calls that move no data (views, metadata) or are matrix products: not element-wise passes
NOT_PASSES = {"aten::view", "aten::as_strided", "aten::t", "aten::transpose", "aten::expand", "aten::reshape",
              "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::slice", "aten::narrow", "aten::detach",
              "aten::alias", "aten::_reshape_alias", "aten::resolve_conj", "aten::resolve_neg", "aten::empty",
              "aten::empty_strided", "aten::empty_like", "aten::mm", "aten::addmm", "aten::bmm", "aten::mv",
              "aten::expand_as", "aten::split", "aten::chunk", "aten::result_type", "aten::real", "aten::_unsafe_view",
              "aten::item", "aten::_local_scalar_dense", "aten::is_nonzero"}


def build_step(method: str, k: int, batch: int):
    """The trainer's step for `method` on a fixed random binary batch (a mask for missing-data methods)."""
    from deepem.methods import make_method
    from deepem.models import ModelConfig, make_model
    from deepem.training.step import TrainStep

    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((batch, D), 0.3))
    mask = torch.rand(batch, D) < 0.75 if method.startswith("miss-") else None
    model = make_model(ModelConfig(), D, data_mean=x.mean(0))
    m = make_method(method, particles=k)
    m.bind(model)
    step = TrainStep(model, m, lr=1e-3)
    return lambda: step(x) if mask is None else step(x, mask)


def count(method: str, k: int, batch: int, steps: int) -> dict[str, float]:
    """Per step: ATen calls, bytes allocated, element-wise passes over (K, B, D) tensors."""
    step = build_step(method, k, batch)
    for _ in range(3):  # optimiser state, caches, autograd's first-call work
        step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True) as prof:
        for _ in range(steps):
            step()
    events = prof.events()
    calls = sum(1 for e in events if e.name.startswith("aten::"))
    # (an op's own allocations are its positive self memory; frees outside ops are "[memory]" events)
    allocated = sum(max(e.self_cpu_memory_usage, 0) for e in events if e.name.startswith("aten::"))
    big = k * batch * D
    passes = 0
    for e in events:
        if not e.name.startswith("aten::") or e.name in NOT_PASSES:
            continue
        if any(c.name.startswith("aten::") for c in e.cpu_children):
            continue
        if any(_numel(s) == big for s in e.input_shapes if isinstance(s, list)):
            passes += 1
    return {"aten_calls": calls / steps, "bytes_allocated": allocated / steps, "kbd_passes": passes / steps}


def _numel(shape: list) -> int:
    n = 1
    for s in shape:
        if not isinstance(s, int):
            return -1
        n *= s
    return n


def count_all(steps: int) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    return {f"{m} K={k} B={b}": count(m, k, b, steps) for m, k, b in CASES}


def count_at(rev: str, steps: int) -> dict[str, dict[str, float]]:
    """count_all with the library's source as it is at git revision `rev`, in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        env = _source(rev, tmp)
        code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import step_overhead; "
                f"print(json.dumps(step_overhead.count_all({steps})))")
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _source(rev: str | None, tmp: str) -> dict[str, str]:
    """The environment of a process that imports deepem from `rev`'s src (None: the caller's)."""
    if rev is None:
        return {**os.environ, "PYTHONPATH": str(TREE_SRC)}
    root = TREE_SRC.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", rev, "src"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
    return {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}


def worker(method: str, k: int, batch: int) -> None:
    """Timing worker: for each line N on stdin, N steps, then their seconds per step on stdout."""
    torch.set_num_threads(1)
    step = build_step(method, k, batch)
    for _ in range(3):
        step()
    from deepem.inference.numerics import flush_denormals

    measure = timer(step)
    for line in sys.stdin:
        with flush_denormals():  # as the training loop runs every step, in both sources alike
            print(measure(int(line)), flush=True)


def timing(rev: str, blocks: int, cases: list[tuple[str, int, int]]) -> dict[str, dict[str, float]]:
    """Per case: this tree's seconds per step / rev's, block by block in two live processes."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        envs = {"before": _source(rev, tmp), "after": _source(None, tmp)}
        for method, k, batch in cases:
            procs = {name: subprocess.Popen([sys.executable, __file__, "--worker", method, str(k), str(batch)],
                                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                     for name, env in envs.items()}
            load = os.getloadavg()[0]
            times = interleaved_blocks({name: _worker_measure(proc) for name, proc in procs.items()}, blocks,
                                       calls=20)
            for p in procs.values():
                p.stdin.close()
                p.wait()
            ratio = summarise(times, "before")["after"]
            out[f"{method} K={k} B={batch}"] = {
                "median_ratio": ratio["median"], "min_ratio": ratio["min"], "max_ratio": ratio["max"],
                "before_ms": 1e3 * statistics.median(times["before"]),
                "after_ms": 1e3 * statistics.median(times["after"]),
                "load_before": load, "load_after": os.getloadavg()[0]}
    return out


def _worker_measure(proc: subprocess.Popen) -> Measure:
    """The timing worker's seconds per step over n steps (it times them itself)."""
    def measure(n: int) -> float:
        proc.stdin.write(f"{n}\n")
        proc.stdin.flush()
        return float(proc.stdout.readline())
    return measure


def callgrind(rev: str, method: str = "iwae", k: int = 5, batch: int = 20, steps: int = 10) -> dict[str, float]:
    """Instructions per step, before and after: (run with `steps` steps − run with none) / steps."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in (("before", _source(rev, tmp)), ("after", _source(None, tmp))):
            env = {**env, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
            total = []
            for n in (0, steps):
                run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
                                      sys.executable, __file__, "--run", method, str(k), str(batch), str(n)],
                                     env=env, capture_output=True, text=True, check=True)
                total.append(int(re.search(r"Collected : (\d+)", run.stderr).group(1)))
            out[name] = (total[1] - total[0]) / steps
    return out


def write(results: dict[str, object], record: dict[str, object], command: str, out_dir: Path) -> str:
    """step_overhead.md and .json in out_dir; returns the md."""
    now, before = results["counts"], results.get("baseline_counts")
    lines = ["1 thread, random binary data, 784-200-200-50 tanh MLPs, Bernoulli likelihood, the trainer's step "
             "with its guards and fused Adam. Counts per step, averaged over the profiled steps; they do not "
             "depend on machine load.", ""]
    if before:
        lines += [f"Baseline: `{results['baseline']}`.", "",
                  "| step | ATen calls before | after | bytes allocated before | after | (K,B,D) passes before "
                  "| after |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for case, c in now.items():
            b = before.get(case, {})
            lines.append(f"| {case} | {b.get('aten_calls', float('nan')):.0f} | {c['aten_calls']:.0f} | "
                         f"{_mb(b.get('bytes_allocated'))} | {_mb(c['bytes_allocated'])} | "
                         f"{b.get('kbd_passes', float('nan')):.0f} | {c['kbd_passes']:.0f} |")
    else:
        lines += ["| step | ATen calls | bytes allocated | (K,B,D) passes |", "| --- | ---: | ---: | ---: |"]
        for case, c in now.items():
            lines.append(f"| {case} | {c['aten_calls']:.0f} | {_mb(c['bytes_allocated'])} | {c['kbd_passes']:.0f} |")
    if results.get("timing"):
        lines += ["", "Secondary check, wall clock: seconds per step after / before, two live processes alternating "
                  "blocks of 20 steps, 1 thread each (median and range over blocks; load average, 1 min, at start "
                  "and end):", "", "| step | after / before | before ms | after ms | load |",
                  "| --- | ---: | ---: | ---: | --- |"]
        for case, t in results["timing"].items():
            lines.append(f"| {case} | {t['median_ratio']:.3f} ({t['min_ratio']:.3f}–{t['max_ratio']:.3f}) | "
                         f"{t['before_ms']:.2f} | {t['after_ms']:.2f} | "
                         f"{t['load_before']:.1f} → {t['load_after']:.1f} |")
        if max(t["load_before"] for t in results["timing"].values()) > (os.cpu_count() or 1):
            lines += ["", f"The load average exceeded the machine's {os.cpu_count()} CPUs: these times are "
                      "dominated by other processes; judge the change by the counts above."]
    if results.get("callgrind"):
        c = results["callgrind"]
        lines += ["", f"Instructions per step (valgrind callgrind, IWAE K=5 B=20, 1 thread): before {c['before']:.3e}, "
                  f"after {c['after']:.3e} ({c['after'] / c['before']:.3f}×)."]
    return write_results(out_dir, "step_overhead", "Per-step overhead of the trainer's step (deterministic counts)",
                         lines, results, record, command)


def _mb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.2f} MiB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="git revision whose src/ to count too (e.g. main)")
    parser.add_argument("--steps", type=int, default=4, help="steps profiled per case")
    parser.add_argument("--timing", type=int, default=0, metavar="BLOCKS", help="interleaved A/B timing blocks")
    parser.add_argument("--callgrind", action="store_true", help="instructions per step under valgrind (slow)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--run", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
    if args.run:
        torch.set_num_threads(1)
        step = build_step(args.run[0], int(args.run[1]), int(args.run[2]))
        for _ in range(3 + int(args.run[3])):
            step()
        return None
    sys.path.insert(0, str(TREE_SRC))  # this tree's library, not an installed one
    record = contention()
    results: dict[str, object] = {"counts": count_all(args.steps)}
    if args.baseline:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", args.baseline], check=True,
                                capture_output=True, text=True).stdout.strip()
        results["baseline"] = f"{args.baseline} ({commit})"
        results["baseline_counts"] = count_at(args.baseline, args.steps)
        if args.timing:
            results["timing"] = timing(args.baseline, args.timing, CASES[:3])
        if args.callgrind:
            results["callgrind"] = callgrind(args.baseline)
    print(write(results, finish(record), command_line(argv), args.out))


if __name__ == "__main__":
    main()
