"""Evaluate a trained run: a log-likelihood estimate on one split plus encoder diagnostics, written to
RUN/evaluation.json (the newest) and RUN/evaluations/<estimator and settings>-<split>-<subset>-<seed>-step<S>.json
with per-point values beside it (same name, -per-point.npy): every evaluation is kept, and one of other
parameters (another checkpoint step S, e.g. after --resume) never replaces it. The first part of the name
is the estimator object's own (`Estimator.tag()`: "iw-k5000", "ais-T500-c16-L10-prior", or a registered
estimator's name and settings), and the record names its estimator (`estimator_name`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepem.errors import InvalidInputError, ResultNotSavedError, not_saved_message
from deepem.evaluation.driver import Estimator
from deepem.evaluation.estimators import make_estimator
from deepem.evaluation.evaluate import evaluate_model, evaluation_subset
from deepem.evaluation.sharding import Shard
from deepem.files import atomic_write_bytes, atomic_write_json, npy_bytes
from deepem.training.distributed import Parallel, finish, launched
from deepem.workflows.loading import TrainedRun, load_trained_run
from deepem.workflows.own_data import read_rows
from deepem.workflows.own_runs import refuse_non_finite
from deepem.workflows.trained_model import load_model


def evaluate_run(run_dir: str | Path, estimator: str | Estimator = "iw", particles: int | None = None,
                 split: str = "test", limit: int | None = None, seed: int = 0, batch_size: int = 100,
                 data_dir: str | None = None, device: str = "cpu", progress: bool = True,
                 observed: bool = False, trained: TrainedRun | None = None, **settings: Any) -> dict[str, Any]:
    """Evaluate the newest good checkpoint of a run and write the results into the run folder.

    estimator: a registered name (evaluation/estimators.py) whose settings record takes `settings`, or
    an estimator object (then `settings` must be empty). particles: K, for an estimator whose settings
    declare `particles` (None: the record's default); refused by one that does not.
    trained: the run as `load_trained_run(run_dir, data_dir, device)` returned it, when the caller holds
    it already (`compare` loads each run once); None: loaded here.

    Inside a launched job (`--nproc N`, torchrun) the batches are shared by the ranks and rank 0 writes
    the result, which equals a single process's (evaluation/sharding.py).

    A run trained on incomplete data (--missing) is evaluated on the complete split, log p(x) (IWEM's
    Table 3); with observed=True on the observed part of the corrupted copy of the split, log p(x_o) (the
    iw-observed estimator, which `--estimator iw --observed` means)."""
    est = evaluation_estimator(estimator, particles, observed, **settings)  # fails before the run is loaded
    observed = observed or est.observed_data
    # (a launched job first: with NCCL, "cuda" then means this rank's GPU)
    parallel, shard = evaluation_shard(device)
    if trained is None:
        trained = load_trained_run(run_dir, data_dir=data_dir, device=device)
    # A run trained on a file of one's own (--dataset FILE) has the file's masks and no complete copy.
    own_file = trained.corrupted is None and trained.data.mask(split) is not None
    if own_file and not observed:
        raise InvalidInputError(f"run {run_dir} was trained on {trained.config.dataset}, whose missing cells are "
                                "unknown: evaluate log p(x_o) with --observed")
    if observed and trained.corrupted is None and not own_file:
        raise InvalidInputError(f"run {run_dir} was trained on complete data; --observed needs a run trained with "
                         "--missing")
    source = trained.data if own_file else trained.corrupted.splits if observed else trained.data
    data, mask = source.split(split), source.mask(split) if observed else None
    if split == "train" and trained.config.train_limit is not None:
        data = data[: trained.config.train_limit]  # only the points the run was trained on
        mask = None if mask is None else mask[: trained.config.train_limit]
    n_split = data.shape[0]
    if limit is not None:
        subset = evaluation_subset(n_split, limit)
        data, mask = data[subset], None if mask is None else mask[subset]
    try:
        record, estimate = evaluate_model(trained.model, data, est, seed, batch_size,
                                          progress and (shard is None or shard.rank == 0), mask=mask, shard=shard)
    finally:
        finish(parallel)
    missing = trained.config.missing
    corrupted = f" corrupted by {missing} (seed {trained.config.missing_seed})" if missing else ""
    record["data"] = (f"observed part of the {split} split{corrupted}: log p(x_o)" if observed else
                      f"complete {split} split" + (f" (the run trained on data corrupted by {missing})"
                                                    if missing else ""))
    record.update(split=split, seed=seed, limit=limit, method=trained.config.method, dataset=trained.config.dataset,
                  checkpoint=trained.checkpoint.name, step=trained.step,
                  subset=f"fixed random {min(limit, n_split)} of {n_split}" if limit else f"all {n_split}")
    record["dtype"] = str(next(trained.model.parameters()).dtype).removeprefix("torch.")
    run = Path(run_dir)
    # Every evaluation keeps its own files, named by its settings and the step of its parameters (a quick
    # K = 10 check never replaces a K = 5000 record, nor a resumed run's the earlier one); evaluation.json
    # is the newest, and names the file it copies.
    tag = evaluation_tag(est, split, observed, limit, seed, trained.step)
    record["file"] = f"evaluations/{tag}.json"
    if shard is not None:
        record["processes"] = shard.world
        if shard.rank != 0:  # rank 0 writes
            return record
    try:
        atomic_write_bytes(run / "evaluations" / f"{tag}-per-point.npy", npy_bytes(estimate.per_point.numpy()))
        atomic_write_json(run / record["file"], record, checksum=True)
        atomic_write_json(run / "evaluation.json", record, checksum=True)
    except OSError as err:
        raise ResultNotSavedError(not_saved_message(run / record["file"], err), record) from err
    return record


def evaluate_input(run_dir: str | Path, input_path: str | Path, estimator: str | Estimator = "iw",
                   particles: int | None = None, seed: int = 0, batch_size: int = 100, device: str = "cpu",
                   progress: bool = True, header: bool | None = None, **settings: Any) -> dict[str, Any]:
    """`deepem evaluate RUN --input FILE`: the run's model (`load_model`: the training data are not read) on
    the rows of FILE, log p(x) of complete rows, log p(x_o) when some cell is empty (estimator "iw" becomes
    "iw-observed", with its K), on the file's own scale; written as the split evaluations are, the split named
    "input-STEM" in the file names, with the file's path and sha256 in the record."""
    est = evaluation_estimator(estimator, particles, **settings)  # bad settings fail before the run is loaded
    trained = load_model(run_dir, device)
    table = read_rows(trained.transform.record(), input_path, header)
    trained.check_support(table.values, table.mask, table.where, table.column, f"{table.path}: ")
    if not table.mask.all() and est.name == "iw":
        est = evaluation_estimator("iw-observed", est.settings.particles)
    record, per_row = trained.evaluate(table.values, est, seed, batch_size, progress, table.mask)
    refuse_non_finite(table, np.asarray(per_row, dtype=np.float64).reshape(-1, 1), "the log-likelihood")
    label = f"input-{table.path.stem}"
    record["data"] = f"the rows of {table.path}" + (": log p(x_o) of their observed cells" if est.observed_data
                                                    else "")
    record.update(split=label, seed=seed, limit=None, method=trained.method, dataset=trained.transform.dataset,
                  checkpoint=trained.checkpoint, step=trained.step, subset=f"all {table.n_rows}",
                  input=str(table.path), input_sha256=table.sha256)
    tag = evaluation_tag(est, label, est.observed_data, None, seed, trained.step)
    record["file"] = f"evaluations/{tag}.json"
    run = Path(run_dir)
    try:
        atomic_write_bytes(run / "evaluations" / f"{tag}-per-point.npy", npy_bytes(per_row))
        atomic_write_json(run / record["file"], record, checksum=True)
        atomic_write_json(run / "evaluation.json", record, checksum=True)
    except OSError as err:
        raise ResultNotSavedError(not_saved_message(run / record["file"], err), record) from err
    return record


def evaluation_shard(device: str = "cpu") -> tuple[Parallel | None, Shard | None]:
    """Inside a launched job: this rank's process group and evaluation shard; else (None, None)."""
    if not launched():
        return None, None
    parallel = Parallel.from_env(device)
    return parallel, Shard(parallel.rank, parallel.world, parallel.gather_cat)


def evaluation_estimator(estimator: str | Estimator = "iw", particles: int | None = None, observed: bool = False,
                         **settings: Any) -> Estimator:
    """The estimator object an evaluation runs: `estimator` (a registered name with `settings`, or an
    object) with K = `particles` in its own settings, whatever its name, if they declare `particles`.
    `--estimator iw --observed` means the iw-observed estimator."""
    if isinstance(estimator, Estimator):
        if settings:
            raise TypeError("settings go into the estimator object, not beside it")
        if particles is not None and hasattr(estimator.settings, "particles"):
            if estimator.settings.particles != particles:
                raise InvalidInputError(f"particles = {particles} was given, and the {estimator.name} "
                                        f"estimator has K = {estimator.settings.particles}; give K once")
        elif particles is not None:
            raise InvalidInputError(f"the {estimator.name} estimator has no particles setting (K)")
        return estimator
    if observed and estimator == "iw":
        estimator = "iw-observed"
    if particles is not None:
        settings["particles"] = particles  # an estimator without K says so (an unknown setting)
    return make_estimator(estimator, **settings)


def evaluation_tag(estimator: Estimator, split: str, observed: bool, limit: int | None, seed: int,
                   step: int) -> str:
    """A file name that says what was evaluated (the parameters of checkpoint step `step`) and how, e.g.
    "iw-k5000-test-n1000-s0-step567": the estimator's own tag, then the data. (Runs evaluated before the
    step was named keep "...-s0.json"; report/compare.py reads both.)"""
    return (f"{estimator.tag()}-{split}{'-observed' if observed else ''}-{f'n{limit}' if limit else 'all'}"
            f"-s{seed}-step{step}")
