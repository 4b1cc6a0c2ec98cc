"""`deepem train --seeds N`: N seeds of one run trained in one process as one batched computation
(training/vectorised.py), seed s into OUT/seed-s, each folder as `deepem train --seed s --out OUT/seed-s`
would write it (to float rounding); `deepem compare --seeds N` trains each method's seeds this way. The
data are loaded once and shared; each seed's trainer (model, validator, run folder) is built exactly as
its single run's, so everything is checked before anything is written. A stopped group is resumed seed
by seed (`deepem train --resume OUT/seed-s`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from deepem.data.base import DataSplits
from deepem.errors import InvalidInputError
from deepem.training.config import TrainConfig
from deepem.training.rng import capture_rng_state, restore_rng_state
from deepem.training.run import RunFolder, RunFolderError
from deepem.training.signals import StopRequest, graceful_stop
from deepem.training.state import TrainingInterrupted
from deepem.training.vectorisable import VectorisationError, check_vectorisable
from deepem.training.vectorised import SeedStepper, train_seeds_together
from deepem.workflows.assembly import build_trainer, resolve, run_data
from deepem.workflows.train import EXIT_ABORTED, EXIT_OK, TrainOutcome, train_run


def seed_folder(out: str | Path, seed: int) -> Path:
    """Where seed `seed` of a vectorised group is written."""
    return Path(out) / f"seed-{seed}"


def train_seeds(config: TrainConfig, seeds: Sequence[int], out: str | Path, force: bool = False,
                progress: bool = True, log: Callable[[str], None] = print, data: DataSplits | None = None,
                handle_signals: bool = True, stop: StopRequest | None = None,
                seeds_per_call: int | None = None) -> TrainOutcome:
    """Train `config` once per seed in `seeds` as one vectorised computation into OUT/seed-S.

    Returns the exit code (0, or 128 + signal when a signal stopped the group after checkpointing every
    seed) and, when finished, {"seeds": [each seed's Trainer summary], "seconds": the group's}; a seed's
    "seconds" is its share of the group's (group_seconds / seeds_in_group). Errors for the
    user (VectorisationError and those of `train_run`) are raised before anything is written. `stop`: for
    tests (a stop request that fires by itself). seeds_per_call: seeds in one vmapped call (None: all on an
    accelerator, a memory-bounded number on CPU; `training.vectorisable.default_seeds_per_call`)."""
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InvalidInputError(f"vectorised seeds need one or more distinct seeds, got {seeds}")
    config = resolve(config, check_dataset=data is None)
    check_vectorisable(config)
    dirs = [seed_folder(out, s) for s in seeds]
    for d in dirs:
        if d.exists() and (not d.is_dir() or any(d.iterdir())) and not force:
            raise RunFolderError(f"run folder {d} already exists and is not empty; pass --force to overwrite it, "
                                 f"or continue that seed alone with --resume {d}")
    shared, _ = run_data(config, data)  # loaded once for every seed
    stop = stop if stop is not None else StopRequest()
    trainers, rng_states = [], []
    for seed, d in zip(seeds, dirs, strict=True):
        # Built as the single run is (seed_everything, then the model): the same initial weights.
        seeded = dataclasses.replace(config, seed=seed, model=dataclasses.replace(config.model))
        trainers.append(build_trainer(seeded, d, data=shared, log=_prefixed(log, seed), progress=False, stop=stop))
        rng_states.append(capture_rng_state())  # the generators the run alone would start from
    stepper = SeedStepper(trainers, rng_states, seeds_per_call=seeds_per_call)  # refuses before anything is written
    for trainer, state in zip(trainers, rng_states, strict=True):
        restore_rng_state(state)  # the step-0 checkpoint records the seed's own generators
        trainer.start(force=force)
    log(f"training {len(seeds)} seeds ({', '.join(map(str, seeds))}) of {config.method} as one vectorised "
        f"computation, {config.epochs} epochs, K = {trainers[0].method.particles}, into {Path(out)}/seed-*")
    with ExitStack() as stack:
        for trainer in trainers:
            stack.enter_context(trainer.run.lock())
        if handle_signals:
            stack.enter_context(graceful_stop(stop))
        try:
            summaries = train_seeds_together(stepper, stop, progress=progress)
        except TrainingInterrupted as stopped:
            log(str(stopped))
            return TrainOutcome(stop.exit_code or EXIT_ABORTED)
    seconds = summaries[0]["seconds"]
    points = sum(s["steps"] for s in summaries) * config.batch_size
    # Each seed's own time is its share of the group's: the S seeds were trained in one computation, so
    # a table of seeds (compare --seeds) adds up to the group's time, not S times it.
    summaries = [{**summary, "seconds": seconds / len(seeds), "group_seconds": seconds, "seeds_in_group": len(seeds)}
                 for summary in summaries]
    log(f"trained {len(seeds)} seeds x {summaries[0]['epochs']} epochs ({summaries[0]['steps']} steps each) in "
        f"{seconds:.1f} s (about {points / max(seconds, 1e-9):.0f} points/s over all seeds); evaluate each with: "
        f"deepem evaluate {dirs[0]}")
    result: dict[str, Any] = {"seeds": summaries, "seconds": seconds}
    return TrainOutcome(EXIT_OK, result)


def _prefixed(log: Callable[[str], None], seed: int) -> Callable[[str], None]:
    return lambda text: log(f"seed {seed}: {text}")


def train_method_seeds(config: TrainConfig, seeds: Sequence[int], out: Path, force: bool = False,
                       progress: bool = True, log: Callable[[str], None] = print
                       ) -> list[tuple[int, Path, dict[str, Any] | None, int]]:
    """`deepem compare --seeds`: every seed of one method, in OUT/seed-S; (seed, run folder, summary, exit code)
    per seed, stopping at the first seed that did not finish (exit code != 0).

    Vectorised (one group) when the method allows it and no seed folder holds a run yet (or force);
    otherwise seed after seed through `train_run`, which resumes a seed folder that holds a run."""
    dirs = [seed_folder(out, s) for s in seeds]
    fresh = force or not any(RunFolder(d).is_run() for d in dirs)
    try:
        check_vectorisable(config)
        vectorisable = len(seeds) > 1
    except VectorisationError as why:
        vectorisable = False
        log(f"   seeds one after another: {why}")
    if fresh and vectorisable:
        outcome = train_seeds(config, seeds, out, force=True, progress=progress, log=log)
        if outcome.exit_code != 0 or outcome.summary is None:
            return [(seeds[0], dirs[0], None, outcome.exit_code)]
        return [(s, d, summary, 0) for s, d, summary in zip(seeds, dirs, outcome.summary["seeds"], strict=True)]
    done = []
    for seed, d in zip(seeds, dirs, strict=True):
        seeded = dataclasses.replace(config, seed=seed, model=dataclasses.replace(config.model))
        resume = not force and RunFolder(d).is_run()
        outcome = train_run(seeded, d, resume=resume, force=True, log=log, progress=progress)
        done.append((seed, d, outcome.summary, outcome.exit_code))
        if outcome.exit_code != 0 or outcome.summary is None:
            break
    return done
