"""Throughput of IWAE training steps and of K = 5000 evaluation, against a minimal plain-PyTorch loop
written out in this file, in the same run; achieved GFLOP/s as a fraction of the measured matmul peak.

    python benchmarks/throughput.py [--device cpu|cuda] [--repeats 5] [--out benchmarks/results]

Model: the 784-200-200-50 tanh MLPs of Burda et al. (2015), Bernoulli likelihood, random binary data of
MNIST's shape (throughput does not depend on the pixel values)."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deepem.evaluation.loglik import iw_log_likelihood_batch
from deepem.methods import make_method
from deepem.models import DeepLatentModel, ModelConfig
from deepem.training.step import TrainStep

D, H, Z = 784, 200, 50
DECODER_MACS = Z * H + H * H + H * D  # per particle
ENCODER_MACS = D * H + H * H + H * 2 * Z  # per data point


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, repeats: int, warmup: int = 2) -> float:
    """Fastest seconds of one call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def timed_pair(a: Callable[[], object], b: Callable[[], object], device: str, repeats: int,
               warmup: int = 2) -> tuple[float, float]:
    """Fastest seconds of one call of a and of b, measured in alternating rounds, so that load from
    other processes falls on both alike (the minimum is the least disturbed round)."""
    for _ in range(warmup):
        a()
        b()
    sync(device)
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
    return min(times_a), min(times_b)


def matmul_peak(device: str, n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matmul GFLOP/s (fastest round): the ceiling this hardware offers to dense layers."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    seconds = timed(lambda: a @ b, device, repeats)
    return 2 * n**3 / seconds / 1e9


class PlainIWAE(nn.Module):
    """The reference: IWAE written directly with nn.Linear, no library code at all."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(D, H), nn.Tanh(), nn.Linear(H, H), nn.Tanh(), nn.Linear(H, 2 * Z))
        self.dec = nn.Sequential(nn.Linear(Z, H), nn.Tanh(), nn.Linear(H, H), nn.Tanh(), nn.Linear(H, D))

    def log_w(self, x: torch.Tensor, k: int) -> torch.Tensor:
        mu, log_std = self.enc(x).chunk(2, -1)
        eps = torch.randn(k, *mu.shape, device=x.device)
        z = mu + log_std.exp() * eps
        logits = self.dec(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        log_pz = -0.5 * (z**2).sum(-1) - 0.5 * Z * math.log(2 * math.pi)
        log_qz = (-0.5 * eps**2 - log_std).sum(-1) - 0.5 * Z * math.log(2 * math.pi)
        return log_px + log_pz - log_qz

    def loss(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return -(torch.logsumexp(self.log_w(x, k), 0) - math.log(k)).mean()


def bench_training(device: str, k: int, batch: int, repeats: int, steps: int) -> dict[str, float]:
    x = torch.bernoulli(torch.full((batch, D), 0.13, device=device))
    model = DeepLatentModel.from_config(ModelConfig(), D).to(device)
    method = make_method("iwae", particles=k)
    step = TrainStep(model, method, lr=1e-3)  # the trainer's own step, non-finite guards included
    plain = PlainIWAE().to(device)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3, eps=1e-4)

    def ours() -> None:
        for _ in range(steps):
            step(x)

    def reference() -> None:
        for _ in range(steps):
            plain_opt.zero_grad(set_to_none=True)
            plain.loss(x, k).backward()
            plain_opt.step()

    t_ours, t_ref = (t / steps for t in timed_pair(ours, reference, device, repeats))
    flops = 3 * 2 * (k * batch * DECODER_MACS + batch * ENCODER_MACS)  # forward + backward (2x forward)
    return {"k": k, "batch": batch, "deepem_points_per_sec": batch / t_ours,
            "plain_points_per_sec": batch / t_ref, "ratio_to_plain": t_ref / t_ours,
            "deepem_gflops": flops / t_ours / 1e9}


@torch.no_grad()
def bench_evaluation(device: str, k: int, points: int, batch: int, repeats: int) -> dict[str, float]:
    x = torch.bernoulli(torch.full((points, D), 0.13, device=device))
    model = DeepLatentModel.from_config(ModelConfig(), D).to(device).eval()
    plain = PlainIWAE().to(device).eval()
    chunk = 500

    def ours() -> None:
        for i in range(0, points, batch):
            iw_log_likelihood_batch(model, x[i:i + batch], k)

    def reference() -> None:
        # The straightforward loop: chunks of particles, all log-weights kept, one logsumexp at the end.
        for i in range(0, points, batch):
            xb = x[i:i + batch]
            torch.logsumexp(torch.cat([plain.log_w(xb, chunk) for _ in range(k // chunk)]), 0)

    t_ours, t_ref = timed_pair(ours, reference, device, repeats, warmup=1)
    flops = 2 * points * (k * DECODER_MACS + ENCODER_MACS)
    return {"k": k, "points": points, "deepem_points_per_sec": points / t_ours,
            "plain_points_per_sec": points / t_ref, "ratio_to_plain": t_ref / t_ours,
            "deepem_gflops": flops / t_ours / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_peak(args.device)
    train = [bench_training(args.device, 50, b, args.repeats, steps=5) for b in (20, 100)]
    evaluation = [bench_evaluation(args.device, 5000, 20, 10, max(1, args.repeats // 2))]
    for row in train + evaluation:
        row["fraction_of_peak"] = row["deepem_gflops"] / peak
    info = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "matmul_peak_gflops": peak,
            "load_average": os.getloadavg(),
            "command": f"python benchmarks/throughput.py --device {args.device} --repeats {args.repeats}"
                       + (f" --threads {args.threads}" if args.threads else "")}
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    lines = [f"# Throughput ({args.device}, torch {torch.__version__}, {info['threads']} threads)", "",
             f"Measured float32 matmul peak: {peak:.1f} GFLOP/s. Command: `{info['command']}`. "
             f"Load average at the end: {info['load_average'][0]:.1f} on {os.cpu_count()} CPUs.", "",
             "| workload | deepem points/s | plain PyTorch points/s | ratio (deepem / plain) | GFLOP/s | of peak |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in train:
        lines.append(f"| IWAE train step, K={r['k']}, B={r['batch']} | {r['deepem_points_per_sec']:.0f} | "
                     f"{r['plain_points_per_sec']:.0f} | {r['ratio_to_plain']:.2f} | {r['deepem_gflops']:.1f} | "
                     f"{r['fraction_of_peak']:.0%} |")
    for r in evaluation:
        lines.append(f"| IW evaluation, K={r['k']} | {r['deepem_points_per_sec']:.1f} | "
                     f"{r['plain_points_per_sec']:.1f} | {r['ratio_to_plain']:.2f} | {r['deepem_gflops']:.1f} | "
                     f"{r['fraction_of_peak']:.0%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"-{args.device.replace(':', '')}"
    (out / f"throughput{suffix}.md").write_text(text)
    (out / f"throughput{suffix}.json").write_text(json.dumps({"info": info, "train": train,
                                                              "evaluation": evaluation}, indent=2) + "\n")


if __name__ == "__main__":
    main()
