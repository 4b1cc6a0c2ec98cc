"""The analogue of REM's Figure 2 (Dieng & Paisley): KL(q(z|x) || p(z)) of the trained encoder, averaged
over test data, against the number of particles K, for IWAE and REM. REM's paper finds the IWAE encoder
degrades as K grows while REM's (trained by the inclusive KL) does not.

    python benchmarks/kl_vs_particles.py --dataset binarized-mnist --data-dir ../shared/data \
        --methods iwae,rem-v1 --particles 2,5,20,50 --epochs 3 --train-limit 10000

Writes benchmarks/results/kl_vs_particles.{md,json,png} (or --out)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deepem.evaluation.diagnostics import active_units, kl_to_prior  # noqa: E402
from deepem.models.config import ModelConfig  # noqa: E402
from deepem.training.config import TrainConfig  # noqa: E402
from deepem.workflows.assembly import build_trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="binarized-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--methods", default="iwae,rem-v1")
    parser.add_argument("--particles", default="2,5,20,50")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/kl-vs-particles", help="where the training runs go")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    methods = args.methods.split(",")
    ks = [int(k) for k in args.particles.split(",")]
    rows = []
    for method in methods:
        for k in ks:
            config = TrainConfig(dataset=args.dataset, method=method, method_options={"particles": k},
                                 epochs=args.epochs, data_dir=args.data_dir, train_limit=args.train_limit,
                                 seed=args.seed, valid_every=0, model=ModelConfig())
            start = time.perf_counter()
            trainer = build_trainer(config, Path(args.runs) / f"{method}-k{k}", progress=False)
            trainer.start(force=True)
            trainer.fit()
            test = trainer.data.test[: args.test_limit]
            rows.append({"method": method, "particles": k, "kl_to_prior": kl_to_prior(trainer.model, test),
                         "active_units": active_units(trainer.model, test),
                         "seconds": time.perf_counter() - start})
            print(json.dumps(rows[-1]), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ("python benchmarks/kl_vs_particles.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k not in ("out", "runs")))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in methods:
        pts = [(r["particles"], r["kl_to_prior"]) for r in rows if r["method"] == method]
        ax.plot(*zip(*pts, strict=True), marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("particles K")
    ax.set_ylabel("KL(q(z|x) || p(z)) on test data (nats)")
    images = f"first {args.train_limit} images" if args.train_limit else "all images"
    ax.set_title(f"{args.dataset}, {args.epochs} epochs on {images}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(out / "kl_vs_particles.png", dpi=120, bbox_inches="tight")
    lines = [f"# KL of the encoder to the prior against K ({args.dataset})", "", f"Command: `{command}`", "",
             "| method | K | KL(q‖p(z)) | active units | seconds |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['method']} | {r['particles']} | {r['kl_to_prior']:.2f} | {r['active_units']} | "
              f"{r['seconds']:.0f} |" for r in rows]
    (out / "kl_vs_particles.md").write_text("\n".join(lines) + "\n")
    (out / "kl_vs_particles.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
