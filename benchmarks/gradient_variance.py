"""Variance of the encoder (φ) gradient of the score-function estimators for binary latents, against
the number of particles K: plain REINFORCE on the K-sample bound (the raw bound as learning signal),
VIMCO (leave-one-out baselines, Mnih & Rezende 2016) and NVIL (a learned input-dependent baseline and
a running centre, Mnih & Gregor 2014; K samples averaged).

    python benchmarks/gradient_variance.py --data-dir ../shared/data [--latents 200] [--repeats 100]

Model: a sigmoid belief net on binarised MNIST, 200 binary latents, linear logistic decoder and encoder
(the SBN layer of the NVIL and VIMCO papers). First RWS (K = 10) trains it for `--train-steps` updates
so the posterior is not the prior, then NVIL's baseline is trained alone for `--baseline-steps` with
the model fixed. On one fixed batch of 20 training images, each estimator's φ-gradient is drawn
`--repeats` times; reported: the total variance (trace of the covariance over φ's parameters) and the
signal-to-noise ratio ||E g||^2 / tr Cov g. Writes benchmarks/results/gradient_variance.{json,md,png}."""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from deepem.data import load_dataset  # noqa: E402
from deepem.methods import make_method  # noqa: E402
from deepem.methods.base import PHI, THETA, draw  # noqa: E402
from deepem.methods.nvil import BASELINE  # noqa: E402
from deepem.methods.vimco import vimco_surrogate  # noqa: E402
from deepem.models import BernoulliEncoder, BernoulliLikelihood, BernoulliPrior, DeepLatentModel, mlp  # noqa: E402
from deepem.models.networks import output_layer  # noqa: E402


def sbn(data_dim: int, latents: int, data_mean: torch.Tensor) -> DeepLatentModel:
    likelihood = BernoulliLikelihood()
    decoder = mlp(latents, [], data_dim)
    likelihood.init_output_bias(output_layer(decoder).bias, data_mean)
    return DeepLatentModel(decoder, likelihood, BernoulliEncoder(data_dim, latents), latents, data_dim,
                           BernoulliPrior(latents))


def reinforce_loss(model: DeepLatentModel, x: torch.Tensor, k: int) -> torch.Tensor:
    """The K-sample bound with its own value as the learning signal of every sample (no baseline)."""
    p = draw(model, x, k, reparameterize=False)
    bound = torch.logsumexp(p.log_joint - p.log_q, 0) - math.log(k)
    return -(bound + (bound.detach() * p.log_q).sum(0)).mean()


def vimco_loss(model: DeepLatentModel, x: torch.Tensor, k: int) -> torch.Tensor:
    p = draw(model, x, k, reparameterize=False)
    return -vimco_surrogate(p.log_joint, p.log_q)[0].mean()


def train(model: DeepLatentModel, data: torch.Tensor, steps: int, groups: dict, method, lr: float = 1e-3) -> None:
    opts = {g: torch.optim.Adam(params, lr=lr) for g, params in groups.items()}
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = data[torch.randint(0, data.shape[0], (20,), generator=gen)]
        for opt in opts.values():
            opt.zero_grad()
        out = method(model, x)
        for g, params in groups.items():
            out.losses[g].backward(inputs=params, retain_graph=True)
            opts[g].step()
        method.after_update()


def phi_gradients(loss_fn, model: DeepLatentModel, repeats: int) -> torch.Tensor:
    params = model.encoder_parameters()
    rows = []
    for r in range(repeats):
        torch.manual_seed(10_000 + r)
        grads = torch.autograd.grad(loss_fn(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--latents", type=int, default=200)
    parser.add_argument("--particles", default="1,2,5,10,20,50")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--baseline-steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = load_dataset("binarized-mnist", args.data_dir)
    torch.manual_seed(0)
    model = sbn(data.data_dim, args.latents, data.train_mean())
    rws = make_method("rws", particles=10)
    rws.bind(model)
    train(model, data.train, args.train_steps, {THETA: model.generative_parameters(),
                                               PHI: model.encoder_parameters()}, rws)
    x = data.train[:20]
    results = []
    for k in [int(v) for v in args.particles.split(",")]:
        nvil = make_method("nvil", particles=k, normalise=False)
        nvil.bind(model)
        train(model, data.train, args.baseline_steps, {BASELINE: nvil.extra_parameter_groups()[BASELINE]}, nvil)
        estimators = {"reinforce": lambda k=k: reinforce_loss(model, x, k),
                      "nvil": lambda nvil=nvil: nvil(model, x).losses[PHI]}
        if k >= 2:
            estimators["vimco"] = lambda k=k: vimco_loss(model, x, k)
        for name, fn in estimators.items():
            g = phi_gradients(fn, model, args.repeats)
            variance = float(g.var(0).sum())
            snr = float(g.mean(0).pow(2).sum()) / variance
            results.append({"estimator": name, "particles": k, "total_variance": variance, "snr": snr})
            print(f"K={k:3d} {name:10s} tr Cov = {variance:.4g}  SNR = {snr:.4g}", flush=True)
    record = {"settings": vars(args), "results": results, "seconds": time.perf_counter() - started,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gradient_variance.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| K | " + " | ".join(f"{e} tr Cov (SNR)" for e in ("reinforce", "nvil", "vimco")) + " |",
             "| --- | --- | --- | --- |"]
    for k in sorted({r["particles"] for r in results}):
        cells = []
        for e in ("reinforce", "nvil", "vimco"):
            row = next((r for r in results if r["particles"] == k and r["estimator"] == e), None)
            cells.append(f"{row['total_variance']:.3g} ({row['snr']:.3g})" if row else "n/a")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out")
    (out / "gradient_variance.md").write_text(
        f"φ-gradient variance on binarised MNIST, SBN with {args.latents} binary latents after "
        f"{args.train_steps} RWS steps; {args.repeats} draws on one batch of 20; "
        f"`python benchmarks/gradient_variance.py {flags}`\n\n" + "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for e in ("reinforce", "nvil", "vimco"):
        rows = [r for r in results if r["estimator"] == e]
        ax.loglog([r["particles"] for r in rows], [r["total_variance"] for r in rows], "o-", label=e)
    ax.set_xlabel("particles K")
    ax.set_ylabel("tr Cov of the φ-gradient")
    ax.set_title(f"SBN {args.latents} latents, binarised MNIST", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "gradient_variance.png", dpi=120)
    print(f"wrote {out}/gradient_variance.{{json,md,png}}")


if __name__ == "__main__":
    main()
