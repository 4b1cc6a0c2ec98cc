"""What mixed precision costs in accuracy: deepem's training step under `--precision bf16-mixed` (and
`bf16-mixed-head32`, the output layers kept in float32) against float32, on binarised MNIST.

    OMP_NUM_THREADS=1 python benchmarks/precision_accuracy.py [--methods iwae,rem-v1] [--particles 50]
        [--seeds 0,1,2] [--updates 10000] [--test-points 10000] [--eval-particles 5000]
        [--precisions 32,bf16-mixed,bf16-mixed-head32] [--out benchmarks/results] [--tag NAME]

Model: the 784-200-200-50 tanh MLPs of Burda et al. (2015), Bernoulli likelihood, decoder bias at the
training data's mean; Adam at 1e-3 (eps 1e-4), batches of 20.

1. Probes, with the same parameters and the same draws (the global generator reseeded before each
   precision's forward pass): per-particle log-weight error |log w_mixed − log w_32| over K particles of
   `--probe-points` test points, and the cosine between the mixed and the float32 gradient of each
   parameter group (θ: decoder; φ: encoder), each on the model as initialised and after the float32
   training of seed 0. For scale, the cosine between two float32 gradients with different draws (the
   Monte Carlo noise of one step's gradient).
2. Training: for each method and seed, every precision trains from the same initial parameters on the
   same batches with the same seed for `--updates` updates; then the IW-`--eval-particles` bound of the
   first `--test-points` test points, always evaluated in float32 with one evaluation seed. Reported:
   each bound, the paired difference (mixed − float32) per seed, their mean and spread, and the seed
   spread of float32 itself.

Results: `precision{tag}.md` and `.json` in `--out`. Nothing here is timed (benchmarks/throughput.py
--precision times the step)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from deepem.data.registry import load_dataset
from deepem.evaluation.loglik import iw_log_likelihood
from deepem.methods.base import PHI, THETA, device_generator
from deepem.methods.registry import make_method
from deepem.models.config import ModelConfig, make_model
from deepem.models.lvm import DeepLatentModel
from deepem.models.networks import networks_in
from deepem.training.precision import mixed_precision
from deepem.training.step import TrainStep, backward_losses

BATCH = 20
LR = 1e-3


def initial_model(seed: int, train: torch.Tensor) -> DeepLatentModel:
    torch.manual_seed(seed)
    model = make_model(ModelConfig(likelihood="bernoulli"), train.shape[1])
    model.likelihood.init_output_bias(model.decoder.head.bias, train.mean(0))
    return model


#: diagnostic variants of the probes: bf16-mixed with one network kept in float32 (where does the error arise?)
DIAGNOSTIC = {"bf16-mixed, encoder in float32": "encoder", "bf16-mixed, decoder in float32": "decoder"}


def in_float32(fn):
    def wrapped(*args, **kwargs):
        with networks_in(None):
            return fn(*args, **kwargs)
    return wrapped


def forward_and_grads(model: DeepLatentModel, method_name: str, k: int, x: torch.Tensor, precision: str,
                      draw_seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The method's log-weights and each group's flattened gradient, with the draws of `draw_seed`."""
    model = copy.deepcopy(model)
    if precision in DIAGNOSTIC:  # this copy's encoder, or its decoder with the likelihood, run in float32
        if DIAGNOSTIC[precision] == "encoder":
            model.encoder.forward = in_float32(model.encoder.forward)
        else:
            model.log_likelihood = in_float32(model.log_likelihood)
        precision = "bf16-mixed"
    method = make_method(method_name, particles=k)
    step = TrainStep(model, method, lr=LR, precision=precision)  # for its groups and its precision check
    torch.manual_seed(draw_seed)
    with mixed_precision(step.precision):
        out = method(model, x, generator=device_generator(x.device))
    backward_losses(out.losses, step.groups)
    grads = {g: torch.cat([p.grad.flatten() for p in params if p.grad is not None])
             for g, params in step.groups.items() if g in (THETA, PHI)}
    return out.log_w.detach(), grads


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def probe(model: DeepLatentModel, method: str, k: int, x: torch.Tensor, precisions: list[str]) -> dict:
    ref_w, ref_g = forward_and_grads(model, method, k, x, "32", draw_seed=123)
    _, other_g = forward_and_grads(model, method, k, x, "32", draw_seed=456)
    row: dict = {"float32_scale": float(ref_w.abs().mean()),
                 "float32_other_draws_cosine": {g: cosine(ref_g[g], other_g[g]) for g in ref_g}}
    for p in [*precisions, *DIAGNOSTIC]:
        if p == "32":
            continue
        w, grads = forward_and_grads(model, method, k, x, p, draw_seed=123)
        assert w.dtype == torch.float32
        err = (w - ref_w).abs()
        row[p] = {"log_w_abs_error_mean": float(err.mean()), "log_w_abs_error_max": float(err.max()),
                  "log_w_error_mean_signed": float((w - ref_w).mean()),
                  "grad_cosine": {g: cosine(grads[g], ref_g[g]) for g in ref_g},
                  "grad_relative_error": {g: float((grads[g] - ref_g[g]).norm() / ref_g[g].norm()) for g in ref_g}}
    return row


def train(model: DeepLatentModel, method_name: str, k: int, data: torch.Tensor, precision: str, updates: int,
          seed: int) -> tuple[DeepLatentModel, int]:
    """`updates` steps on batches in an order set by `seed` alone; the draws seeded by `seed` too."""
    model = copy.deepcopy(model)
    step = TrainStep(model, make_method(method_name, particles=k), lr=LR, precision=precision)
    order = torch.Generator().manual_seed(seed)
    torch.manual_seed(10_000 + seed)
    problems, done, perm, at = 0, 0, torch.empty(0, dtype=torch.long), 0
    while done < updates:
        if at + BATCH > perm.numel():
            perm, at = torch.randperm(data.shape[0], generator=order), 0
        result = step(data[perm[at:at + BATCH]])
        at += BATCH
        done += 1
        problems += bool(result.problem)
    return model, problems


def test_bound(model: DeepLatentModel, test: torch.Tensor, particles: int) -> float:
    model.eval()
    return iw_log_likelihood(model, test, particles=particles, batch_size=10, seed=0).mean


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def report(results: dict) -> str:
    cfg = results["config"]
    lines = [f"# Mixed precision: accuracy against float32 ({cfg['machine']}, torch {cfg['torch']}, "
             f"{cfg['threads']} thread(s))", "",
             f"Command: `{cfg['command']}`.", "",
             f"Binarised MNIST, 784-200-200-50 tanh MLPs, Bernoulli likelihood, K = {cfg['particles']}, batches "
             f"of {BATCH}, Adam {LR:g}. {cfg['cut']}", "",
             "## Same parameters, same draws", "",
             f"Per-particle log-weight error |log w − log w₃₂| over K × {cfg['probe_points']} particles (test "
             "points), and the cosine between each group's mixed and float32 gradient. For scale: the mean "
             "|log w₃₂|, and the cosine between two float32 gradients with different draws (one step's "
             "Monte Carlo noise). Two diagnostic rows keep one network in float32 (the encoder; the "
             "decoder with the likelihood) to show where the error arises.", "",
             "| method | parameters | precision | mean abs error (nats) | max abs error | mean signed error | "
             "cos θ | cos φ | rel. error θ | rel. error φ | mean abs log w₃₂ | cos θ, φ of two float32 draws |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, row in results["probes"].items():
        method, where = key.split("@")
        for p, r in row.items():
            if not isinstance(r, dict) or "grad_cosine" not in r:
                continue
            c, e, o = r["grad_cosine"], r["grad_relative_error"], row["float32_other_draws_cosine"]
            lines.append(f"| {method} | {where} | {p} | {r['log_w_abs_error_mean']:.3f} | "
                         f"{r['log_w_abs_error_max']:.3f} | {r['log_w_error_mean_signed']:+.3f} | "
                         f"{c[THETA]:.5f} | {c[PHI]:.5f} | {e[THETA]:.3f} | {e[PHI]:.3f} | "
                         f"{row['float32_scale']:.1f} | {o[THETA]:.3f}, {o[PHI]:.3f} |")
    lines += ["", f"## Test IW-{cfg['eval_particles']} bound after {cfg['updates']} updates", "",
              f"Nats per test point (first {cfg['test_points']} test points, evaluated in float32); paired "
              "difference = mixed − float32 at the same seed (negative: mixed is worse).", "",
              "| method | precision | bound per seed | mean | seed sd | paired difference per seed | "
              "mean difference | sd of differences | non-finite steps |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for method, by_precision in results["training"].items():
        ref = by_precision.get("32", {})
        for p, runs in by_precision.items():
            seeds = sorted(runs, key=int)
            if not seeds:
                continue
            bounds = [runs[s]["bound"] for s in seeds]
            paired = [runs[s]["bound"] - ref[s]["bound"] for s in seeds if s in ref]
            diff = ("–" if p == "32" else " / ".join(f"{d:+.2f}" for d in paired))
            mean_diff = "–" if p == "32" or not paired else f"{statistics.mean(paired):+.2f}"
            sd_diff = "–" if p == "32" or not paired else f"{spread(paired):.2f}"
            lines.append(f"| {method} | {p} | {' / '.join(f'{b:.2f}' for b in bounds)} | "
                         f"{statistics.mean(bounds):.2f} | {spread(bounds):.2f} | {diff} | {mean_diff} | {sd_diff} | "
                         f"{sum(runs[s]['non_finite_steps'] for s in seeds)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="iwae,rem-v1")
    parser.add_argument("--particles", type=int, default=50)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--test-points", type=int, default=10_000, help="first N test points (10000: all)")
    parser.add_argument("--eval-particles", type=int, default=5000)
    parser.add_argument("--probe-points", type=int, default=100)
    parser.add_argument("--precisions", default="32,bf16-mixed,bf16-mixed-head32")
    parser.add_argument("--data-dir", default=os.environ.get("DEEPEM_DATA"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--tag", default="", help="suffix of the result files: precision{tag}.md")
    parser.add_argument("--probes-only", action="store_true",
                        help="the probes alone: train only the float32 run of the first seed (for its parameters)")
    parser.add_argument("--cut", default="", help="a sentence for the report: what this run left out")
    args = parser.parse_args()
    methods, precisions = args.methods.split(","), args.precisions.split(",")
    if "32" not in precisions:
        parser.error("--precisions must include 32 (the reference)")
    seeds = [int(s) for s in args.seeds.split(",")]
    data = load_dataset("binarized-mnist", args.data_dir, download=False)
    test = data.test[:args.test_points]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ("OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "(unset)") + " python benchmarks/"
               f"precision_accuracy.py --methods {args.methods} --particles {args.particles} --seeds {args.seeds} "
               f"--updates {args.updates} --test-points {args.test_points} --eval-particles {args.eval_particles} "
               f"--probe-points {args.probe_points} --precisions {args.precisions}"
               + (" --probes-only" if args.probes_only else "") + (f" --tag={args.tag}" if args.tag else ""))
    results: dict = {"config": {**{k: v for k, v in vars(args).items() if k not in ("out", "data_dir")},
                                "test_points": test.shape[0], "command": command, "torch": torch.__version__,
                                "threads": torch.get_num_threads(), "machine": platform.processor()
                                or platform.machine()},
                     "probes": {}, "training": {}}

    def save() -> None:
        (out / f"precision{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / f"precision{args.tag}.md").write_text(report(results))

    probe_x = data.test[:args.probe_points]
    trained_precisions, trained_seeds = (["32"], seeds[:1]) if args.probes_only else (precisions, seeds)
    for method in methods:
        results["training"][method] = {p: {} for p in trained_precisions}
        for seed in trained_seeds:
            start = initial_model(seed, data.train)
            for p in trained_precisions:
                trained, problems = train(start, method, args.particles, data.train, p, args.updates, seed)
                bound = test_bound(trained, test, args.eval_particles)
                results["training"][method][p][str(seed)] = {"bound": bound, "non_finite_steps": problems}
                print(f"{method} seed {seed} {p}: IW-{args.eval_particles} {bound:.3f}", flush=True)
                if p == "32" and seed == seeds[0]:
                    results["probes"][f"{method}@initial"] = probe(start, method, args.particles, probe_x,
                                                                     precisions)
                    results["probes"][f"{method}@trained"] = probe(trained, method, args.particles, probe_x,
                                                                     precisions)
                save()
    print(report(results))


if __name__ == "__main__":
    main()
