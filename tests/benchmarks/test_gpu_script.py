"""benchmarks/gpu.py's logic on CPU: parts isolated in child processes, goals judged, json and md written.
No GPU needed (the real run is `python benchmarks/gpu.py` on a GPU machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu  # noqa: E402


def record(iw_seconds: float, step_ratio: float) -> dict:
    parts = {
        "cuda tests": {"status": "ok", "seconds": 9.0, "result": {"passed": 3, "failed": 0, "skipped": 0}},
        "nccl data-parallel": {"status": "ok", "seconds": 2.0,
                               "result": {"backend": "nccl", "all_reduce_matches": True, "all_reduce_ms": 0.1}},
        "train step": {"status": "ok", "seconds": 60.0, "result": {"rows": [
            {"k": 50, "batch": 20, "deepem_vs_plain_eager": step_ratio, "skipped": {"plain torch.compile": "x"},
             "contenders": {"deepem": {"median": 1.0, "min": 1.0, "max": 1.0, "seconds_per_call": 0.002}}}]}},
        "vectorised seeds": {"status": "failed", "seconds": 5.0, "error": "Traceback\nRuntimeError: boom"},
        "iw test set": {"status": "ok", "seconds": 12.0, "result": {"points": 10_000, "k": 5000, "batch": 100,
                                                                    "seconds": iw_seconds,
                                                                    "mean_log_likelihood": -540.0}},
    }
    return parts


def test_goals_are_judged_from_each_parts_result():
    verdicts = list(gpu.goals(record(iw_seconds=8.0, step_ratio=2.5), dry=False).values())
    assert verdicts == ["met", "not met", "not measured (failed)"]
    verdicts = list(gpu.goals(record(iw_seconds=10.5, step_ratio=3.0), dry=False).values())
    assert verdicts == ["not met", "met", "not measured (failed)"]
    assert set(gpu.goals(record(8.0, 3.0), dry=True).values()) == {"not measured (dry run)"}


def test_markdown_lists_goals_parts_and_the_failing_parts_error():
    parts = record(8.0, 2.5)
    info = {"device_name": "H100", "torch": "2.x", "command": "python benchmarks/gpu.py", "seconds": 90.0}
    text = gpu.markdown({"info": info, "parts": parts, "goals": gpu.goals(parts, dry=False)})
    assert "| IW-5000 over the 10 000 test images in under 10 s | met |" in text
    assert "| vectorised seeds | failed | 5.0 | RuntimeError: boom |" in text
    assert "| 50, 20 | plain torch.compile | x | – |" in text


def test_the_terminal_gets_one_table_of_parts_goals_and_step_contenders():
    parts = record(8.0, 2.5)
    text = gpu.console_table({"parts": parts, "goals": gpu.goals(parts, dry=False)})
    lines = text.strip().splitlines()
    assert lines[:2] == ["| what | result |", "| --- | --- |"] and all(line.startswith("| ") for line in lines)
    assert "| part: vectorised seeds | failed, 5 s: RuntimeError: boom |" in lines
    assert "| goal: IW-5000 over the 10 000 test images in under 10 s | met |" in lines
    assert "| step K=50 B=20: deepem | 2.00 ms, 1.00 (1.00–1.00) x deepem eager |" in lines
    assert "| step K=50 B=20: plain torch.compile | not run: x |" in lines


def test_a_failing_part_is_recorded_not_raised():
    result = gpu.run_part("no such part", dict(gpu.DRY), limit=120)
    assert result["status"] == "failed" and "KeyError" in result["error"]


def test_dry_run_writes_json_and_md(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--dry-run", "--parts",
                           "nccl data-parallel,train step", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "gpu-dry.json").read_text())
    assert [p["status"] for p in out["parts"].values()] == ["not run", "ok", "ok", "not run", "not run"]
    assert out["parts"]["nccl data-parallel"]["result"]["all_reduce_matches"] is True
    rows = out["parts"]["train step"]["result"]["rows"]
    assert [(r["k"], r["batch"]) for r in rows] == [(5, 4)]
    bf16 = {"deepem bf16-mixed", "deepem bf16-mixed-head32"}
    ran, skipped = set(rows[0]["contenders"]), rows[0]["skipped"]
    assert ran - bf16 == {"deepem", "plain"}  # (bfloat16 ones where the CPU has native bfloat16)
    assert {name: why for name, why in skipped.items() if "CUDA graph" in name} == {
        f"{name} CUDA graph": "needs CUDA" for name in ("deepem", *sorted(bf16), "deepem 16-mixed", "plain")}
    assert skipped["deepem compile"] == skipped["plain torch.compile"] == "on a GPU only (minutes to compile on CPU)"
    assert skipped["deepem 16-mixed"].startswith("PrecisionError: --precision 16-mixed runs on CUDA only")
    assert rows[0]["best_deepem"] in ran
    assert set(out["goals"].values()) == {"not measured (dry run)"}
    assert (tmp_path / "gpu-dry.md").read_text().startswith("# GPU run (CPU (dry run)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_without_a_gpu_the_full_run_says_so_in_one_line():
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("use --dry-run to check the script on CPU")
