"""Data-parallel training throughput: 1 process against 2 (`--nproc 2`, gloo on CPU), in data points
per second of IWAE training steps (K = 5 and K = 50) at a global batch of B = 20, the 784-200-200-50
tanh MLPs of Burda et al. (2015) on random binary data of MNIST's shape.

    python benchmarks/distributed_throughput.py [--seconds 3] [--out benchmarks/results]

Each configuration times the trainer's own step (gradient all-reduce included for 2 ranks, whose
shards are 10 points each) over `--seconds` per repeat, best of `--repeats`; ranks are started by the
same launcher as `deepem train --nproc`. Torch threads per rank follow the `--nproc` rule,
max(1, cores // nproc), and 1 process is also timed with 1 thread. The load average before and after
each configuration is recorded: on a shared 2-core machine the ranks compete with everything else."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import harness
from deepem.methods import make_method
from deepem.models import ModelConfig, make_model
from deepem.training.distributed import Parallel, finish, launched, rank_seed
from deepem.training.step import TrainStep
from deepem.workflows.launch import launch

B = 20
D = 784


def run_config(spec: dict) -> dict:
    """Time IWAE steps in this process (one rank of a job when launched); the rate is global points/s."""
    torch.set_num_threads(spec["threads"])
    parallel = Parallel.from_env() if launched() else None
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((B, D), 0.3))
    model = make_model(ModelConfig(latent_dim=50, hidden=[200, 200]), D, x.mean(0))
    method = make_method("iwae", particles=spec["k"])
    method.bind(model)
    step = TrainStep(model, method, lr=1e-3)
    if parallel is not None:
        step.grad_sync = parallel.grad_sync
        torch.manual_seed(rank_seed(0, parallel.rank))
        x = x[parallel.shard(x)]
    for _ in range(5):  # warm-up
        step(x)
    best = 0.0
    for _ in range(spec["repeats"]):
        if parallel is not None:
            parallel.barrier()
        start, steps = time.perf_counter(), 0
        while True:  # every rank takes the same number of steps: rank 0 decides when to stop
            step(x)
            steps += 1
            done = time.perf_counter() - start >= spec["seconds"]
            if parallel is not None:
                done = bool(parallel.any_rank("done" if done else ""))
            if done:
                break
        best = max(best, steps * B / (time.perf_counter() - start))
    finish(parallel)
    return {"points_per_s": best}


def _rank_entry(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    result = run_config(spec)
    if os.environ.get("RANK", "0") == "0":
        Path(argv[1]).write_text(json.dumps(result))
    return 0


def measure(k: int, nproc: int, threads: int, seconds: float, repeats: int) -> dict:
    spec = {"k": k, "threads": threads, "seconds": seconds, "repeats": repeats}
    load_before = os.getloadavg()[0]
    if nproc == 1:
        result = run_config(spec)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            code = launch(_rank_entry, [json.dumps(spec), str(out)], nproc, "benchmark")
            if code:
                sys.exit(f"the {nproc}-process run failed with exit code {code}")
            result = json.loads(out.read_text())
    return {"k": k, "nproc": nproc, "threads_per_rank": threads, "global_batch": B, **result,
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    record = harness.contention()
    rows = []
    for k in (5, 50):
        for nproc, threads in ((1, cores), (1, 1), (2, max(1, cores // 2))):
            row = measure(k, nproc, threads, args.seconds, args.repeats)
            print(json.dumps(row), flush=True)
            rows.append(row)
    for row in rows:
        for threads in sorted({cores, 1}):
            base = next(r for r in rows if r["k"] == row["k"] and r["nproc"] == 1 and r["threads_per_rank"] == threads)
            row[f"vs_1_process_{threads}_threads"] = round(row["points_per_s"] / base["points_per_s"], 3)
    harness.finish(record)
    meta = {"seconds": args.seconds, "repeats": args.repeats}
    lines = [
        f"The load average in the table is the machine's 1-minute figure before and after each configuration. "
        f"IWAE, global batch B = {B} (10 points per rank with 2 ranks), 784-200-200-50 MLPs, best of "
        f"{args.repeats} × {args.seconds:g} s.",
        "",
        f"| K | processes | torch threads per rank | points/s | vs 1 process, {cores} threads | vs 1 process, 1 thread "
        "| load before | load after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['k']} | {r['nproc']} | {r['threads_per_rank']} | {r['points_per_s']:.0f} | "
                     f"{r[f'vs_1_process_{cores}_threads']:.2f} | {r['vs_1_process_1_threads']:.2f} | "
                     f"{r['load_before']} | {r['load_after']} |")
    lines += ["", "On 2 cores the ranks can at best use the same 2 cores one process with 2 threads uses, and they "
              "add a gradient all-reduce per step: data parallelism pays off across machines or GPUs, not here. A "
              "process with 2 threads on a loaded 2-core machine can be far slower than with 1: its threads wait "
              "for each other at every operation while other processes hold the cores (the `--nproc` rule gives "
              "each rank cores // N threads for this reason)."]
    print(harness.write_results(args.out, "distributed_throughput",
                                "Data-parallel training throughput: 1 process vs 2 (gloo, CPU)", lines,
                                {"meta": meta, "rows": rows}, record, harness.command_line()))


if __name__ == "__main__":
    main()
