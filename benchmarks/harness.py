"""What every speed script of benchmarks/ shares, so that each script is its workload only:

- timing: `timer` turns a call into a measure (seconds per call over n calls), `interleaved_blocks` runs
  several measures in blocks, their order rotated from block to block so that load from other processes
  falls on all alike, and `summarise` gives per variant the median and spread (min, max, quartiles) of its
  seconds and of its ratio to a named reference measured in the same blocks;
- the contention record (`contention` / `finish`): load average before and after, CPU model and the flags
  that decide fast paths (avx512_bf16, amx_bf16, ...), CPU count, torch threads and version, the GPU;
- results (`write_results`): a .json and a .md, both with the exact command line and that record.

A ratio is the variant's seconds over the reference's in the same block: below 1 the variant is faster."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: seconds per call over n calls in a row
Measure = Callable[[int], float]
#: /proc/cpuinfo flags that change which kernels torch can use
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_tile")


def sync(device: str) -> None:
    """Wait for queued GPU work, so that a clock read after it counts it."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timer(fn: Callable[[], object], device: str = "cpu", clock: Callable[[], float] = time.perf_counter) -> Measure:
    """The measure of fn: n calls in a row, their seconds per call by `clock` (process_time for CPU time)."""
    def measure(n: int) -> float:
        sync(device)
        start = clock()
        for _ in range(n):
            fn()
        sync(device)
        return (clock() - start) / n
    return measure


def call_seconds(fn: Callable[[], object], repeats: int, device: str = "cpu",
                 clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """The seconds of each of `repeats` calls of fn, timed one by one."""
    measure = timer(fn, device, clock)
    return [measure(1) for _ in range(repeats)]


def calls_to_fill(measure: Measure, target_seconds: float) -> int:
    """Whole calls that fill about target_seconds (at least one), after one warm-up call."""
    measure(1)
    return max(1, round(target_seconds / measure(2)))


def interleaved_blocks(measures: dict[str, Measure], blocks: int, calls: int | dict[str, int] | None = None,
                       target_seconds: float = 0.2) -> dict[str, list[float]]:
    """Seconds per call of every variant in each block, the order rotated from block to block. calls: per
    variant per block (one number for all); None: as many as fill target_seconds, set after warm-up."""
    names = list(measures)
    if calls is None:
        counts = {name: calls_to_fill(measures[name], target_seconds) for name in names}
    else:
        counts = calls if isinstance(calls, dict) else dict.fromkeys(names, calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for b in range(blocks):
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(measures[name](counts[name]))
    return times


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median, min, max and quartiles (the inclusive method: the quartiles of two values are between them)."""
    values = list(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "q1": q1, "q3": q3}


def summarise(times: dict[str, list[float]], reference: str) -> dict[str, dict[str, Any]]:
    """Per variant: the spread of its block ratios to `reference` (variant seconds / reference seconds in the
    same block) as median/min/max/q1/q3, and of its own seconds per call ("seconds"), with
    "seconds_per_call" its median (the field's older name)."""
    if reference not in times:
        raise KeyError(f"reference {reference!r} is not one of the variants {list(times)}")
    out = {}
    for name, ts in times.items():
        ratios = [t / r for t, r in zip(ts, times[reference], strict=True)]
        seconds = spread(ts)
        out[name] = {**spread(ratios), "seconds": seconds, "seconds_per_call": seconds["median"], "blocks": len(ts)}
    return out


def fastest_block(seconds: dict[str, float], reference: dict[str, float], points: int) -> dict[str, float]:
    """Figures of the fastest block (other jobs only ever slow a block down, so the minimum is the steadiest
    estimate of the code's own speed), from `spread` of a variant's and of the reference's seconds per call:
    seconds_per_step, points_per_sec (`points` a call), speed_vs_reference (the reference's fastest / this
    one's: above 1 is faster), the same from medians, and spread = (max - min) / min, the noise level."""
    t = seconds["min"]
    return {"seconds_per_step": t, "steps_per_sec": 1 / t, "points_per_sec": points / t,
            "speed_vs_reference": reference["min"] / t, "median_seconds_per_step": seconds["median"],
            "median_speed_vs_reference": reference["median"] / seconds["median"], "spread": (seconds["max"] - t) / t}


def fmt_ratio(summary: dict[str, float]) -> str:
    """'median (min–max)' of a ratio summary."""
    return f"{summary['median']:.2f} ({summary['min']:.2f}–{summary['max']:.2f})"


def load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:  # no load average on this platform
        return None


def cpu_model_and_flags(cpuinfo: str | None = None) -> tuple[str, dict[str, bool]]:
    """The CPU's model name and which of CPU_FLAGS it has, from /proc/cpuinfo (or the text given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, {flag: flag in flags for flag in CPU_FLAGS}


def contention(device: str = "cpu") -> dict[str, Any]:
    """The record taken before measuring: machine, threads, versions and the load average now."""
    import torch  # here, so that a script that times fresh processes (cli_startup.py) can use the rest light

    model, flags = cpu_model_and_flags()
    record: dict[str, Any] = {
        "device": str(device), "cpu_model": model, "cpu_flags": flags, "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_average_before": load_average(), "load_average_after": None,
    }
    if str(device).startswith("cuda"):
        record["gpu"] = torch.cuda.get_device_name()
    return record


def finish(record: dict[str, Any]) -> dict[str, Any]:
    """The record with the load average after measuring added (and returned)."""
    record["load_average_after"] = load_average()
    return record


def command_line(argv: list[str] | None = None, script: str | None = None) -> str:
    """The command that reproduces this run: `python benchmarks/NAME.py ARGS` (argv: the arguments; None:
    this process's)."""
    script = script or Path(sys.argv[0]).name
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *args])


def record_line(record: dict[str, Any]) -> str:
    """The contention record in one sentence of markdown."""
    flags = ", ".join(f for f, has in record["cpu_flags"].items() if has) or "none of " + ", ".join(CPU_FLAGS)
    loads = [record.get("load_average_before"), record.get("load_average_after")]
    load = " → ".join("n/a" if x is None else f"{x[0]:.2f}" for x in loads)
    gpu = f", GPU {record['gpu']}" if record.get("gpu") else ""
    return (f"Machine: {record['cpu_model']} ({flags}), {record['cpus']} CPUs{gpu}; torch {record['torch']}, "
            f"{record['torch_threads']} thread(s); load average (1 min) before → after: {load}; {record['date']}.")


def markdown(title: str, command: str, record: dict[str, Any], body: str | list[str]) -> str:
    """A results page: title, the command, the contention record, then the body."""
    text = body if isinstance(body, str) else "\n".join(body)
    return f"# {title}\n\nCommand: `{command}`\n\n{record_line(record)}\n\n{text.rstrip()}\n"


def write_results(out_dir: str | Path, stem: str, title: str, body: str | list[str], data: dict[str, Any],
                  record: dict[str, Any], command: str) -> str:
    """STEM.json ({"command", "contention", **data}) and STEM.md (`markdown`) in out_dir; returns the md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(title, command, record, body)
    (out / f"{stem}.json").write_text(json.dumps({"command": command, "contention": record, **data}, indent=2)
                                      + "\n")
    (out / f"{stem}.md").write_text(text)
    return text
