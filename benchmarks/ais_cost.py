"""Cost of AIS log-likelihood evaluation (`deepem.evaluation.ais`) in test points per second, against
the same algorithm written plainly in this file (prior start, sigmoid schedule, one HMC transition of
L leapfrog steps per temperature, per-point step sizes adapted toward acceptance 0.6), in the same run.

    python benchmarks/ais_cost.py [--device cpu|cuda] [--points 10] [--leapfrog 10] [--threads 1]
        [--repeats 2] [--settings 100x4 100x16 300x16] [--out benchmarks/results]

Model: the 784-200-200-50 tanh MLPs of Burda et al. (2015), Bernoulli likelihood, random binary data of
MNIST's shape (the cost does not depend on the pixel values). Each setting is TxC: T temperatures, C
chains. The table also extrapolates to the MNIST test set (10,000 points) and to the paper's setting
(T = 10,000, 16 chains, L = 10; AIWAE Sec. 5.2), since cost is linear in T.

Threads default to 1: AIS is a long sequence of small matrix products, and on a shared CPU a second
intra-op thread that has to wait for a busy core made each product up to 20x slower in our runs."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deepem.evaluation.ais import forward_ais
from deepem.evaluation.settings import AISSettings
from deepem.models import ModelConfig, make_model
from harness import command_line, contention, finish, interleaved_blocks, timer, write_results

D, H, Z = 784, 200, 50
DECODER_MACS = Z * H + H * H + H * D  # per chain, one forward pass
TEST_POINTS = 10_000


class PlainAIS:
    """The reference: AIS from N(0, I) with HMC written directly on an nn.Sequential decoder. It
    recomputes the gradient at the start of every transition (L + 1 gradients per temperature)."""

    def __init__(self, x: torch.Tensor, step_size: float, rate: float = 0.05) -> None:
        self.dec = nn.Sequential(nn.Linear(Z, H), nn.Tanh(), nn.Linear(H, H), nn.Tanh(),
                                 nn.Linear(H, D)).to(x.device)
        for p in self.dec.parameters():
            p.requires_grad_(False)
        self.x, self.step_size, self.rate = x, step_size, rate

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.dec(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, self.x.expand_as(logits), reduction="none").sum(-1)
        return log_px - 0.5 * (z**2).sum(-1)  # log p(z) up to a constant, which cancels in the weights

    def log_f(self, z: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log f_β = (1 - β) log N(z; 0, I) + β log p(x, z) (constants dropped), its gradient, log p(x|z)."""
        z = z.detach().requires_grad_(True)
        log_prior = -0.5 * (z**2).sum(-1)
        log_lik = self.log_joint(z) - log_prior
        val = log_prior + beta * log_lik
        (grad,) = torch.autograd.grad(val.sum(), z)
        return val.detach(), grad, log_lik.detach()

    def run(self, chains: int, temperatures: int, leapfrog: int) -> torch.Tensor:
        betas = torch.sigmoid(torch.linspace(-4, 4, temperatures, dtype=torch.float64))
        betas = ((betas - betas[0]) / (betas[-1] - betas[0])).tolist()
        b = self.x.shape[0]
        z = torch.randn(chains, b, Z, device=self.x.device)
        eps = torch.full((b, 1), self.step_size, device=self.x.device)
        log_w = torch.zeros(chains, b, device=self.x.device)
        with torch.enable_grad():
            _, _, log_lik = self.log_f(z, 0.0)
            for t in range(1, temperatures):
                log_w += (betas[t] - betas[t - 1]) * log_lik
                if t == temperatures - 1:
                    break
                val0, grad, _ = self.log_f(z, betas[t])
                p0 = torch.randn_like(z)
                p = p0 + 0.5 * eps * grad
                znew = z
                for i in range(leapfrog):
                    znew = znew + eps * p
                    val, grad, lik_new = self.log_f(znew, betas[t])
                    p = p + (eps if i < leapfrog - 1 else 0.5 * eps) * grad
                log_acc = (val - 0.5 * (p**2).sum(-1)) - (val0 - 0.5 * (p0**2).sum(-1))
                accept = torch.rand_like(log_acc).log() < log_acc
                z = torch.where(accept[..., None], znew, z)
                log_lik = torch.where(accept, lik_new, log_lik)
                acc = torch.exp(log_acc.clamp(max=0)).mean(0)[:, None]
                eps = torch.where(acc > 0.6, eps * (1 + self.rate), eps / (1 + self.rate)).clamp(1e-4, 1.0)
        return torch.logsumexp(log_w, 0) - math.log(chains)


def timed_pair(ours, plain, warm_ours, warm_plain, device: str, repeats: int) -> tuple[float, float]:
    """Fastest of `repeats` interleaved timings of each, after a short warm-up run of each: interleaving
    and the minimum keep a shared machine's load from favouring either."""
    warm_ours(), warm_plain()
    times = interleaved_blocks({"deepem": timer(ours, device), "plain": timer(plain, device)}, repeats, calls=1)
    return min(times["deepem"]), min(times["plain"])


def bench(device: str, temperatures: int, chains: int, leapfrog: int, points: int, repeats: int
          ) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((points, D), 0.13, device=device))
    model = make_model(ModelConfig(), D).to(device).eval()
    plain = PlainAIS(x, 0.05)
    t_ours, t_ref = timed_pair(lambda: forward_ais(model, x, AISSettings(chains, temperatures, leapfrog)),
                               lambda: plain.run(chains, temperatures, leapfrog),
                               lambda: forward_ais(model, x, AISSettings(chains, 4, leapfrog)),
                               lambda: plain.run(chains, 4, leapfrog), device, repeats)
    # per leapfrog step: one decoder forward and a backward to z (~2 forward costs)
    flops = 3 * 2 * DECODER_MACS * points * chains * (temperatures - 2) * leapfrog
    pps = points / t_ours
    paper_pps = pps * (temperatures * leapfrog) / (10_000 * 10) * chains / 16
    return {"temperatures": temperatures, "chains": chains, "leapfrog": leapfrog, "points": points,
            "deepem_points_per_sec": pps, "plain_points_per_sec": points / t_ref,
            "ratio_to_plain": t_ref / t_ours, "deepem_gflops": flops / t_ours / 1e9,
            "test_set_hours": TEST_POINTS / pps / 3600,
            "paper_setting_test_set_hours": TEST_POINTS / paper_pps / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--settings", nargs="+", default=["100x4", "100x16", "300x16"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record = contention(args.device)
    rows = []
    for s in args.settings:
        t, c = (int(v) for v in s.split("x"))
        rows.append(bench(args.device, t, c, args.leapfrog, args.points, args.repeats))
        print(rows[-1], flush=True)
    finish(record)
    lines = [f"784-200-200-50 Bernoulli model, {args.points} test points per batch, L={args.leapfrog}, "
             f"{args.threads} thread(s), fastest of {args.repeats} interleaved runs, "
             "from the prior, sigmoid schedule.", "",
             "| T | chains | deepem points/s | plain PyTorch points/s | ratio (deepem / plain) | GFLOP/s "
             "| 10k test points (h) | 10k points at T=10000, 16 chains (h) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['temperatures']} | {r['chains']} | {r['deepem_points_per_sec']:.3g} | "
                     f"{r['plain_points_per_sec']:.3g} | {r['ratio_to_plain']:.2f} | {r['deepem_gflops']:.1f} | "
                     f"{r['test_set_hours']:.3g} | {r['paper_setting_test_set_hours']:.3g} |")
    lines += ["", "Cost is linear in T x chains x L x points; the last two columns extrapolate from the "
              "measured rate."]
    suffix = "" if args.device == "cpu" else f"-{args.device.replace(':', '')}"
    title = f"AIS evaluation cost ({args.device}, torch {torch.__version__}, {record['torch_threads']} threads)"
    print(write_results(args.out, f"ais_cost{suffix}", title, lines, {"rows": rows}, record, command_line()))


if __name__ == "__main__":
    main()
