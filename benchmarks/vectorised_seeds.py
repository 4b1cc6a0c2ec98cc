"""When do vectorised seeds pay? Training points per second, summed over seeds, of S seeds trained as one
vmapped computation (training/vectorised.py) against the same S seeds trained one after another.

    python benchmarks/vectorised_seeds.py [--device cpu|cuda] [--threads 1] [--repeats 3] [--steps 5]

Model: the 784-200-200-50 tanh MLPs of Burda et al. (2015), Bernoulli likelihood, IWAE, random binary data
of MNIST's shape. Each cell: the fastest of `repeats` rounds, sequential and vectorised rounds alternating
(load from other processes falls on both alike); a round is `steps` whole guarded training steps of every
seed (sequential: seed after seed, each its own Trainer's step; vectorised: one group step per batch).
Sequential S runs go at one run's rate whatever S is; they are measured anyway, beside the group."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from deepem.methods import make_method
from deepem.models import ModelConfig, make_model
from deepem.training.config import TrainConfig
from deepem.training.rng import capture_rng_state, seed_everything
from deepem.training.trainer import Trainer
from deepem.training.vectorised import SeedStepper
from harness import command_line, contention, finish, interleaved_blocks, timer, write_results

D = 784


def fastest_pair(a: Callable[[], object], b: Callable[[], object], device: str, repeats: int
                 ) -> tuple[float, float]:
    """Fastest seconds of one call of a and of b, timed in alternating rounds after a warm-up of each, so
    that load from other processes falls on both alike."""
    a()
    b()
    times = interleaved_blocks({"a": timer(a, device), "b": timer(b, device)}, repeats, calls=1)
    return min(times["a"]), min(times["b"])


def build(seeds: int, k: int, batch: int, device: str, tmp: Path, per_call: int | None = None
          ) -> tuple[list[Trainer], SeedStepper]:
    trainers, states = [], []
    data = torch.bernoulli(torch.full((batch * 4, D), 0.13))
    for s in range(seeds):
        config = TrainConfig(dataset="custom", method="iwae", method_options={"particles": k}, batch_size=batch,
                             seed=s, device=device, valid_every=0)
        seed_everything(s)
        model = make_model(ModelConfig(likelihood="bernoulli"), D)
        trainers.append(Trainer(model, make_method("iwae", particles=k), data, tmp / f"seed-{s}", config,
                                progress=False, log=lambda _: None))
        states.append(capture_rng_state())
    return trainers, SeedStepper(trainers, states, seeds_per_call=per_call)


def measure(seeds: int, k: int, batch: int, device: str, repeats: int, steps: int, tmp: Path,
            per_call: int | None = None) -> dict[str, float]:
    trainers, group = build(seeds, k, batch, device, tmp, per_call)
    x = torch.bernoulli(torch.full((seeds, batch, D), 0.13)).to(device)

    def sequential() -> None:
        for i, t in enumerate(trainers):
            for _ in range(steps):
                t.step(x[i])

    def vectorised() -> None:
        for _ in range(steps):
            group.step_on(x)

    points = seeds * steps * batch
    seconds_seq, seconds_vec = fastest_pair(sequential, vectorised, device, repeats)
    seq, vec = points / seconds_seq, points / seconds_vec
    return {"seeds": seeds, "particles": k, "batch": batch, "seeds_per_call": group.seeds_per_call,
            "sequential_points_per_s": seq, "vectorised_points_per_s": vec, "speedup": vec / seq}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="training steps of every seed per round")
    parser.add_argument("--seeds", default="1,5,20")
    parser.add_argument("--particles", default="5,50")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--seeds-per-call", type=int, default=None,
                        help="seeds in one vmapped call (default: the library's choice, all on a GPU)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "deepem-vectorised-seeds-bench"  # nothing is written there
    rows = []
    record = contention(args.device)
    for k in (int(v) for v in args.particles.split(",")):
        for s in (int(v) for v in args.seeds.split(",")):
            row = measure(s, k, args.batch, args.device, args.repeats, args.steps, tmp, args.seeds_per_call)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finish(record)
    suffix = "" if args.device == "cpu" else f"_{args.device.replace(':', '')}"
    lines = ["IWAE on the 784-200-200-50 MLPs, B = 20, random binary data. Training points per second summed over "
             "S seeds: S runs one after another (sequential) against one vmapped group of S seeds (vectorised); "
             f"fastest of {args.repeats} alternating rounds of {args.steps} steps per seed.", "",
             "| K | S | seeds per vmapped call | sequential points/s | vectorised points/s | speed-up |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['particles']} | {r['seeds']} | {r['seeds_per_call']} | {r['sequential_points_per_s']:.0f} | "
              f"{r['vectorised_points_per_s']:.0f} | {r['speedup']:.2f} |" for r in rows]
    title = f"Vectorised seeds ({args.device}, torch {torch.__version__}, {record['torch_threads']} threads)"
    print(write_results(args.out, f"vectorised_seeds{suffix}", title, lines,
                        {"info": {"repeats": args.repeats, "steps": args.steps}, "rows": rows}, record, command_line()))


if __name__ == "__main__":
    main()
