"""What `--tensorboard` costs a training run (training/tensorboard.py, workflows/watch.py). Target: < 2 % of a
training step.

The option does nothing inside a step: the trainer hands each logging window's record (every 50 steps
and at each epoch's end) and each validation to the logger. So its cost per step is

    (cost of writing one window) x (windows per step) + (cost of the validation extras) x (validations per step)

and each part is timed on its own here (median of many calls, so the load of a shared machine moves it
less): a window's record written by the logger, the validation extras (KL to the prior and active units
on the validation points, the sample and reconstruction figures rendered to PNG and written), a training
step (the trainer's guarded step on digits), and the validation itself for scale. End to end, the same
run is also trained with and without the option, alternately, `--repeats` times (wall time per step,
validation included; noisy on a shared machine, which is why the parts are timed too).

    python benchmarks/tensorboard_overhead.py [--epochs 3] [--repeats 3] [--out benchmarks/results]
    python benchmarks/tensorboard_overhead.py --quick     # a correctness run: fewer calls, nothing written

Writes tensorboard_overhead.md and .json (with the load average before and after)."""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from deepem.models.config import ModelConfig
from deepem.training.config import TrainConfig
from deepem.training.metrics import LOG_EVERY_STEPS, logged_extras
from deepem.training.steppers import SingleStepper
from deepem.training.tensorboard import FOLDER, TensorBoardLogger
from deepem.workflows.assembly import assemble, build_trainer
from deepem.workflows.train import train_run
from deepem.workflows.watch import validation_watch
from harness import (
    Measure,
    call_seconds,
    command_line,
    contention,
    finish,
    interleaved_blocks,
    markdown,
    summarise,
    write_results,
)

RESULTS = Path(__file__).parent / "results"
TARGET = 0.02


def config(epochs: int, tensorboard: bool) -> TrainConfig:
    """The bundled 8x8 digits, IWAE K = 5, batch 20, the default model, validation (IWAE-100 on the
    validation split) every epoch."""
    return TrainConfig(dataset="digits", method="iwae", method_options={"particles": 5}, epochs=epochs,
                       batch_size=20, seed=0, tensorboard=tensorboard, model=ModelConfig())


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    return statistics.median(call_seconds(call, repeats))


def parts(folder: Path, calls: int) -> dict[str, float]:
    """Seconds of: one training step, one window written, one validation's extras, one validation."""
    cfg = config(1, True)
    trainer = build_trainer(cfg, folder / "run", log=lambda _: None, progress=False)
    trainer.start()
    stepper = SingleStepper(trainer)
    stepper.start_epoch(0)
    batches = trainer.batches_per_epoch

    def one_step() -> None:
        stepper.step(trainer.state.batch % batches)
        trainer.state.batch += 1

    for _ in range(10):  # warm-up
        one_step()
    step = median_seconds(one_step, calls)
    trainer.state.window = {}
    record = {"kind": "train", "step": 50, "epoch": 0, "points_per_sec": 1000.0, "loss_theta": 20.0,
              "loss_phi": 20.0, "elbo": -21.0, "iw_bound": -20.0, "ess_fraction": 0.4,
              **logged_extras({"theta": 1e-3, "phi": 1e-3}, 0)}
    logger = TensorBoardLogger(folder / "logger" / FOLDER, validation_watch(assemble(cfg).data, cfg))
    window = median_seconds(lambda: logger.write(record), calls)
    extras = median_seconds(lambda: logger.validated(50, trainer.model), max(3, calls // 50))
    validation = median_seconds(lambda: trainer.validate(trainer.model), max(3, calls // 50))
    logger.close()
    trainer.run.root.joinpath(".lock").unlink(missing_ok=True)
    return {"step_s": step, "window_s": window, "validation_extras_s": extras, "validation_s": validation,
            "batches_per_epoch": batches}


def end_to_end(folder: Path, epochs: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per step (validation included) of the same run without and with the option, alternated."""
    runs = itertools.count()

    def measure(tensorboard: bool) -> Measure:
        def train(n: int) -> float:  # n = 1: one whole run
            outcome = train_run(config(epochs, tensorboard), folder / f"run-{next(runs)}", progress=False,
                                log=lambda _: None)
            assert outcome.summary is not None
            return outcome.summary["seconds"] / outcome.summary["steps"]
        return train
    return interleaved_blocks({"without": measure(False), "with": measure(True)}, repeats, calls=1)


def windows_per_step(batches: int) -> float:
    """Logging windows per step: every LOG_EVERY_STEPS steps and at each epoch's end (one epoch's count)."""
    return len({b for b in range(1, batches + 1) if b % LOG_EVERY_STEPS == 0 or b == batches}) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500, help="calls timed per part (a median)")
    parser.add_argument("--quick", action="store_true", help="a correctness run: 1 epoch, 1 repeat, 50 calls; "
                                                             "prints the numbers, writes nothing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.repeats, args.calls = 1, 1, 50
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    record = contention()
    with tempfile.TemporaryDirectory() as tmp:
        measured = parts(Path(tmp), args.calls)
        runs = end_to_end(Path(tmp), args.epochs, args.repeats)
    finish(record)
    step, bpe = measured["step_s"], measured["batches_per_epoch"]
    per_step_windows = measured["window_s"] * windows_per_step(bpe)
    per_step_validation = measured["validation_extras_s"] / bpe  # validation every epoch
    without, with_tb = statistics.median(runs["without"]), statistics.median(runs["with"])
    result = {
        **measured,
        "windows_per_step": windows_per_step(bpe),
        "window_cost_fraction_of_step": per_step_windows / step,
        "validation_extras_per_step_fraction": per_step_validation / step,
        "validation_extras_fraction_of_validation": measured["validation_extras_s"] / measured["validation_s"],
        "end_to_end_s_per_step": runs,
        "end_to_end_overhead": with_tb / without - 1,
        "end_to_end_ratio": summarise(runs, "without")["with"],  # run by run: with / without
    }
    title = f"What --tensorboard costs ({record['date']})"
    command = command_line()
    if args.quick:
        print(markdown(title, command, record, report(result)))
    else:
        print(write_results(args.out, "tensorboard_overhead", title, report(result), result, record, command))


def report(r: dict) -> str:
    ms = 1e3
    return "\n".join([
        f"digits, IWAE K = 5, batch 20, {r['batches_per_epoch']} steps an epoch, validation (IWAE-100) every "
        "epoch.", "",
        "| part | median ms | per training step |", "| --- | --- | --- |",
        f"| a training step | {r['step_s'] * ms:.3f} | 100 % |",
        f"| one logging window written ({r['windows_per_step']:.3f} windows a step) | {r['window_s'] * ms:.3f} | "
        f"{r['window_cost_fraction_of_step']:.2%} (target < {TARGET:.0%}) |",
        f"| validation extras (KL, active units, 2 figures as PNG pixels) | {r['validation_extras_s'] * ms:.1f} | "
        f"{r['validation_extras_per_step_fraction']:.2%} at one validation an epoch |",
        f"| the validation itself, for scale | {r['validation_s'] * ms:.1f} | extras = "
        f"{r['validation_extras_fraction_of_validation']:.0%} of it |", "",
        "End to end (seconds per step, validation included, runs alternated): without "
        + ", ".join(f"{v * ms:.2f}" for v in r["end_to_end_s_per_step"]["without"]) + " ms; with "
        + ", ".join(f"{v * ms:.2f}" for v in r["end_to_end_s_per_step"]["with"])
        + f" ms; median overhead {r['end_to_end_overhead']:+.1%} (noisy on a shared machine).", ""])


if __name__ == "__main__":
    main()
