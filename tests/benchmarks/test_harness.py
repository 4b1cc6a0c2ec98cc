"""benchmarks/harness.py: ratios and spread from known timings, the contention record, the written results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402


def test_ratio_and_spread_from_known_timings():
    times = {"ref": [1.0, 2.0, 4.0, 1.0], "other": [2.0, 3.0, 2.0, 3.0]}
    summary = harness.summarise(times, "ref")
    # block ratios of "other": 2, 1.5, 0.5, 3 -> sorted 0.5, 1.5, 2, 3
    assert summary["other"]["median"] == pytest.approx(1.75)
    assert (summary["other"]["min"], summary["other"]["max"]) == (0.5, 3.0)
    assert summary["other"]["q1"] == pytest.approx(1.25) and summary["other"]["q3"] == pytest.approx(2.25)
    assert summary["ref"]["median"] == summary["ref"]["min"] == summary["ref"]["max"] == 1.0
    assert summary["other"]["seconds_per_call"] == 2.5 and summary["ref"]["seconds"]["max"] == 4.0
    with pytest.raises(KeyError, match="nope"):
        harness.summarise(times, "nope")


def test_blocks_rotate_the_order_and_use_the_given_counts():
    order = []

    def measure(name):
        def run(n):
            order.append((name, n))
            return float(len(order))
        return run

    times = harness.interleaved_blocks({"a": measure("a"), "b": measure("b"), "c": measure("c")}, blocks=3,
                                       calls={"a": 1, "b": 2, "c": 3})
    assert [name for name, _ in order] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(n == {"a": 1, "b": 2, "c": 3}[name] for name, n in order)
    assert times == {"a": [1.0, 6.0, 8.0], "b": [2.0, 4.0, 9.0], "c": [3.0, 5.0, 7.0]}


def test_timer_counts_by_the_clock_given():
    ticks = iter([10.0, 16.0])
    calls = []
    assert harness.timer(lambda: calls.append(1), clock=lambda: next(ticks))(3) == 2.0
    assert len(calls) == 3


def test_cpu_model_and_flags_from_cpuinfo():
    text = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 fma avx512f "
            "avx512_bf16 amx_bf16\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t: fpu\n")
    model, flags = harness.cpu_model_and_flags(text)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags["avx512_bf16"] and flags["amx_bf16"] and flags["avx2"] and not flags["avx512_fp16"]
    assert set(flags) == set(harness.CPU_FLAGS)


def test_contention_record_fields():
    record = harness.finish(harness.contention("cpu"))
    assert {"cpu_model", "cpu_flags", "cpus", "torch", "torch_threads", "load_average_before",
            "load_average_after", "device", "date"} <= set(record)
    assert len(record["load_average_before"]) == 3 and len(record["load_average_after"]) == 3
    assert record["torch_threads"] >= 1 and isinstance(record["cpu_flags"]["avx512_bf16"], bool)


def test_results_carry_the_exact_command(tmp_path):
    command = harness.command_line(["--blocks", "1", "--note", "a b"], script="throughput.py")
    assert command == "python benchmarks/throughput.py --blocks 1 --note 'a b'"
    record = harness.finish(harness.contention())
    text = harness.write_results(tmp_path, "x", "Title", ["| a |", "| 1 |"], {"rows": [1]}, record, command)
    md = (tmp_path / "x.md").read_text()
    assert md == text and md.startswith("# Title\n") and f"Command: `{command}`" in md and "| 1 |" in md
    assert "load average" in md and record["cpu_model"] in md
    saved = json.loads((tmp_path / "x.json").read_text())
    assert saved["command"] == command and saved["rows"] == [1] and saved["contention"]["torch"] == record["torch"]


def test_fastest_block_figures():
    summary = harness.summarise({"ref": [2.0, 4.0, 3.0], "fast": [1.0, 1.5, 1.25]}, "ref")
    fastest = harness.fastest_block(summary["fast"]["seconds"], summary["ref"]["seconds"], points=20)
    assert fastest["seconds_per_step"] == 1.0 and fastest["points_per_sec"] == 20.0
    assert fastest["speed_vs_reference"] == 2.0 and fastest["median_speed_vs_reference"] == 3.0 / 1.25
    assert fastest["spread"] == 0.5
