"""The GPU run, prepared to go in one command on one GPU (under 5 minutes on an H100; the first thing a
session with a GPU runs):

    python benchmarks/gpu.py [--device cuda] [--out benchmarks/results]
    python benchmarks/gpu.py --dry-run [--out DIR]    # the same logic on CPU at tiny sizes, in seconds

Parts, each in its own child process with its own time limit, so one that fails or hangs is recorded
and the rest still run (benchmarks/gpu_parts.py):

- cuda tests: pytest on the CUDA tests (tests/test_device_paths.py: device paths, fused layer against CPU,
  the device decision with CUDA's sync check set to error, the CUDA-graph step against the eager one per
  precision) and the compiled step against the eager one (tests/training/test_compile.py);
- nccl data-parallel: a one-process NCCL group all-reducing a gradient-sized tensor;
- train step: deepem's IWAE step at K = 50, B = 20 and 100 under each precision (32, bf16-mixed,
  bf16-mixed-head32, 16-mixed), eager and as the library's CUDA graph (training/cuda_graph.py), and with
  --compile (float32), against plain PyTorch eager, a CUDA-graphed plain step and a torch.compile'd one,
  in interleaved blocks; the goal is judged on deepem's fastest form;
- vectorised seeds: benchmarks/vectorised_seeds.py on the device;
- iw test set: IW-5000 over the 10 000 binarised-MNIST test images ($DEEPEM_DATA or ../shared/data).

Writes gpu.json and gpu.md (gpu-dry.* with --dry-run) with each part's result or error and the goals
marked met, not met or not measured: IW-5000 over the test set under 10 s; deepem's K = 50, B = 20 step
at least 3x plain eager; vectorised seeds paying (speed-up above 1) at the smallest K."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness import command_line, contention, finish, record_line

HERE = Path(__file__).resolve().parent
PRECISIONS = ["32", "bf16-mixed", "bf16-mixed-head32", "16-mixed"]
FULL = {"device": "cuda", "k": 50, "batches": [20, 100], "blocks": 5, "eval_k": 5000, "eval_points": 10_000,
        "eval_batch": 100, "vectorised_steps": 5, "vectorised_seeds": "1,5,20", "vectorised_particles": "5,50",
        "precisions": PRECISIONS, "compile_tests": True,
        "test_files": ["tests/test_device_paths.py", "tests/training/test_distributed.py",
                       "tests/training/test_compile.py"]}
DRY = {"device": "cpu", "k": 5, "batches": [4], "blocks": 2, "eval_k": 20, "eval_points": 10, "eval_batch": 5,
       "vectorised_steps": 1, "vectorised_seeds": "1,2", "vectorised_particles": "2", "precisions": PRECISIONS,
       "compile_tests": False, "test_files": ["tests/test_device_paths.py"]}
#: seconds per part on the full run; the sum, 5 minutes, bounds the whole run (each part usually takes less)
LIMITS = {"cuda tests": 90, "nccl data-parallel": 20, "train step": 120, "vectorised seeds": 40,
          "iw test set": 30}


def run_part(name: str, settings: dict, limit: float) -> dict:
    """One part in a child process; its result, or what went wrong, and its seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        settings = dict(settings, timeout=max(5.0, limit - 10), out=tmp)
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(HERE / "gpu.py"), "--part", name, "--settings",
                                   json.dumps(settings), "--result", str(result_file)],
                                  capture_output=True, text=True, timeout=limit, cwd=HERE.parent)
        except subprocess.TimeoutExpired:
            return {"status": "timed out", "seconds": limit, "error": f"no result within {limit:.0f} s"}
        seconds = time.perf_counter() - start
        if proc.returncode == 0 and result_file.is_file():
            return {"status": "ok", "seconds": seconds, "result": json.loads(result_file.read_text())}
        return {"status": "failed", "seconds": seconds, "error": (proc.stderr or proc.stdout)[-1500:]}


def goals(parts: dict, dry: bool) -> dict[str, str]:
    """Each goal: 'met', 'not met', or why it was not measured."""
    def verdict(part: str, test) -> str:
        if dry:
            return "not measured (dry run)"
        if parts[part]["status"] != "ok":
            return f"not measured ({parts[part]['status']})"
        return "met" if test(parts[part]["result"]) else "not met"

    def step_ok(r: dict) -> bool:
        row = next(row for row in r["rows"] if row["k"] == 50 and row["batch"] == 20)
        return row["deepem_vs_plain_eager"] >= 3

    return {"IW-5000 over the 10 000 test images in under 10 s":
            verdict("iw test set", lambda r: r["points"] == 10_000 and r["k"] == 5000 and r["seconds"] < 10),
            "K=50, B=20 training step at least 3x plain PyTorch eager": verdict("train step", step_ok),
            "vectorised seeds pay at the smallest K": verdict("vectorised seeds",
                                                              lambda r: r["best_speedup_at_smallest_k"] > 1)}


def markdown(record: dict) -> str:
    info, parts = record["info"], record["parts"]
    lines = [f"# GPU run ({info['device_name']}, torch {info['torch']})", "",
             f"Command: `{info['command']}`. Total {info['seconds']:.0f} s.", "",
             *([record_line(record["contention"]), ""] if "contention" in record else []), "## Goals", "",
             "| goal | verdict |", "| --- | --- |"]
    lines += [f"| {g} | {v} |" for g, v in record["goals"].items()]
    lines += ["", "## Parts", "", "| part | status | seconds | result |", "| --- | --- | --- | --- |"]
    for name, p in parts.items():
        lines.append(f"| {name} | {p['status']} | {p['seconds']:.1f} | {headline(name, p)} |")
    step = parts["train step"]
    if step["status"] == "ok":
        lines += ["", "## Training step: seconds per step over deepem eager's (median over blocks, range)", "",
                  "| K, B | contender | ratio | ms per step |", "| --- | --- | --- | --- |"]
        for row in step["result"]["rows"]:
            for name, c in row["contenders"].items():
                lines.append(f"| {row['k']}, {row['batch']} | {name} | {c['median']:.2f} ({c['min']:.2f}–"
                             f"{c['max']:.2f}) | {c['seconds_per_call'] * 1e3:.2f} |")
            lines += [f"| {row['k']}, {row['batch']} | {name} | {why} | – |" for name, why in row["skipped"].items()]
    return "\n".join(lines) + "\n"


def console_table(record: dict) -> str:
    """Everything in one table for the terminal: each part, each goal, each step contender."""
    lines = ["| what | result |", "| --- | --- |"]
    lines += [f"| part: {name} | {p['status']}, {p['seconds']:.0f} s: {headline(name, p)} |"
              for name, p in record["parts"].items()]
    lines += [f"| goal: {g} | {v} |" for g, v in record["goals"].items()]
    step = record["parts"]["train step"]
    for row in step["result"]["rows"] if step["status"] == "ok" else []:
        for name, c in row["contenders"].items():
            lines.append(f"| step K={row['k']} B={row['batch']}: {name} | {c['seconds_per_call'] * 1e3:.2f} ms, "
                         f"{c['median']:.2f} ({c['min']:.2f}–{c['max']:.2f}) x deepem eager |")
        lines += [f"| step K={row['k']} B={row['batch']}: {name} | not run: {why[:120]} |"
                  for name, why in row["skipped"].items()]
    return "\n".join(lines) + "\n"


def headline(name: str, part: dict) -> str:
    if part["status"] != "ok":
        return part["error"].strip().splitlines()[-1][:200].replace("|", "/") if part["error"].strip() else ""
    r = part["result"]
    if name == "cuda tests":
        return f"{r.get('passed', 0)} passed, {r.get('failed', 0)} failed, {r.get('skipped', 0)} skipped"
    if name == "nccl data-parallel":
        return f"{r['backend']}: all-reduce matches {r['all_reduce_matches']}, {r['all_reduce_ms']:.2f} ms"
    if name == "train step":
        return ", ".join(f"B={row['batch']}: {row.get('best_deepem', 'deepem')} {row['deepem_vs_plain_eager']:.2f}x "
                         "plain eager" for row in r["rows"])
    if name == "vectorised seeds":
        return f"best speed-up at K={r['smallest_k']}: {r['best_speedup_at_smallest_k']:.2f} ({r['best_seeds']} seeds)"
    return f"{r['points']} points, K={r['k']}: {r['seconds']:.2f} s, mean {r['mean_log_likelihood']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the script, measures nothing")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--parts", default=",".join(LIMITS), help="comma-separated parts to run (default: all)")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # child process: one part
        sys.path.insert(0, str(HERE))
        from gpu_parts import PARTS
        Path(args.result).write_text(json.dumps(PARTS[args.part](json.loads(args.settings))))
        return
    if not args.dry_run and args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU machine, or use --dry-run to check the script on CPU")
    settings = dict(DRY if args.dry_run else FULL, **({} if args.dry_run else {"device": args.device}))
    start = time.perf_counter()
    machine = contention(settings["device"])
    chosen = args.parts.split(",")
    if unknown := [p for p in chosen if p not in LIMITS]:
        parser.error(f"unknown part(s) {unknown}; choose from {list(LIMITS)}")
    parts = {name: run_part(name, settings, limit if not args.dry_run else 120) if name in chosen
             else {"status": "not run", "seconds": 0.0, "error": "not among --parts"} for name, limit in LIMITS.items()}
    on_gpu = settings["device"].startswith("cuda")
    finish(machine)
    info = {"device": settings["device"], "device_name": torch.cuda.get_device_name() if on_gpu else "CPU (dry run)",
            "torch": torch.__version__, "dry_run": args.dry_run, "settings": settings,
            "seconds": time.perf_counter() - start, "command": command_line()}
    record = {"info": info, "goals": goals(parts, args.dry_run), "parts": parts, "contention": machine}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "gpu-dry" if args.dry_run else "gpu"
    (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    text = markdown(record)
    (out / f"{name}.md").write_text(text)
    print(console_table(record))
    print(f"(the full record: {out / f'{name}.md'} and {out / f'{name}.json'})")


if __name__ == "__main__":
    main()
