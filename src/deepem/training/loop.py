"""The training loop, the only one: epochs, batches, the metrics window, validation, checkpoint times,
stop requests, and what the non-finite policy and early stopping decide. It trains one run or S runs
in lockstep (vectorised seeds); what a step computes is the stepper's (steppers.py: one model,
possibly one rank of a data-parallel job; vectorised.py: S seeds' stacked parameters).

Every run's counters advance together, so the first run's state is the loop's clock. Each run writes
its own folder (Trainer): a checkpoint of S runs is S checkpoints, each as that run alone would write
it, so any of them resumes alone."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from deepem.inference.numerics import flush_denormals
from deepem.methods.base import Method
from deepem.training.allocator import freed_memory_kept
from deepem.training.checkpoint_file import checkpoint_name
from deepem.training.config import TrainConfig
from deepem.training.distributed import Parallel
from deepem.training.early_stopping import EarlyStopping
from deepem.training.guards import NonFiniteError
from deepem.training.metrics import LOG_EVERY_STEPS, window_record
from deepem.training.nonfinite import Action, NonFinitePolicy
from deepem.training.run import RunFolder
from deepem.training.signals import StopRequest
from deepem.training.state import TrainingInterrupted, TrainState, resume_command
from deepem.training.steppers import Stepper, StepReport
from deepem.training.validation import Validator, validation_due


class LoopRun(Protocol):
    """What the loop asks of each run (training/trainer.py's Trainer)."""

    config: TrainConfig
    state: TrainState
    run: RunFolder
    method: Method
    validate: Validator | None
    early_stopping: EarlyStopping
    saved_at: tuple[int, int] | None
    log: Callable[[str], None]

    @property
    def batches_per_epoch(self) -> int: ...
    @property
    def budget_updates(self) -> int: ...
    def where(self, at: tuple[int, int, int] | None = None) -> str: ...
    def set_learning_rates(self, epoch: int) -> None: ...
    def append_metrics(self, record: dict[str, Any]) -> None: ...
    def validate_epoch(self) -> None: ...
    def save(self) -> Path: ...
    def roll_back(self, diagnosis: str) -> None: ...
    def finish(self, elapsed: float) -> dict[str, Any]: ...


def fit_runs(runs: Sequence[LoopRun], stepper: Stepper, stop: StopRequest, progress: bool = True,
             parallel: Parallel | None = None) -> list[dict[str, Any]]:
    """Train every run to its configured number of epochs from where they stand (together: they must
    stand at the same step); each run's summary. TrainingInterrupted after checkpointing every run when
    `stop` is set; NonFiniteError when the non-finite policy says stop."""
    if len({(r.state.epoch, r.state.batch, r.state.step) for r in runs}) != 1:
        raise ValueError("runs trained together must stand at the same epoch, batch and step")
    # Freed memory kept for the loop: the tensors every step allocates again cost no page faults
    # (training/allocator.py; the CLI keeps it for the whole process already).
    with flush_denormals(), freed_memory_kept():
        return _Loop(runs, stepper, stop, progress, parallel).fit()


class _Loop:
    def __init__(self, runs: Sequence[LoopRun], stepper: Stepper, stop: StopRequest, progress: bool,
                 parallel: Parallel | None) -> None:
        self.runs, self.stepper, self.stop, self.parallel = list(runs), stepper, stop, parallel
        self.progress = progress
        self.config = runs[0].config
        self.policy = NonFinitePolicy.from_config(self.config)
        self.folders = [r.run.root for r in runs]
        self.bpe = runs[0].batches_per_epoch
        self.window_start = time.perf_counter()
        self.started = 0.0

    @property
    def clock(self) -> TrainState:
        return self.runs[0].state  # (a rollback replaces the state object: always read it afresh)

    def fit(self) -> list[dict[str, Any]]:
        total = self._total_steps()
        self.started = time.perf_counter() - self.clock.elapsed
        bar = tqdm(total=total, initial=min(self.clock.step, total),
                   disable=None if self.progress else True,  # None: on a terminal only, never into log files
                   unit="step", dynamic_ncols=True, mininterval=1.0, desc=self.stepper.label or None)
        try:
            while not self._budget_spent() and not self._patience_spent():
                if not self._epoch(bar):  # rolled back: go on from the restored state
                    self.started = time.perf_counter() - self.clock.elapsed
                    bar.n = min(self.clock.step, total)
                    bar.refresh()
        finally:
            bar.close()
        elapsed = time.perf_counter() - self.started
        return [r.finish(elapsed) for r in self.runs]

    def _patience_spent(self) -> bool:
        return all(r.early_stopping.spent(r.state) for r in self.runs)

    def _total_steps(self) -> int:
        """The budget in updates (TrainConfig.budget_updates)."""
        return self.runs[0].budget_updates

    def _budget_spent(self) -> bool:
        cfg, s = self.config, self.clock
        if cfg.max_iter is None:
            return s.epoch >= cfg.epochs
        return s.step >= self.runs[0].budget_updates

    def _validate(self) -> None:
        for i, r in enumerate(self.runs):
            if r.validate is not None:
                self.stepper.export(i)
                r.validate_epoch()

    def _epoch(self, bar: tqdm) -> bool:
        """Train the rest of the epoch in progress; False when a rollback ended it early."""
        cfg, runs, s = self.config, self.runs, self.clock
        for r in runs:  # each run's optimisers' rates go into its checkpoints
            r.set_learning_rates(s.epoch)
        self.stepper.start_epoch(s.epoch)
        while s.batch < self.bpe and not self._budget_spent():
            if self._stop_requested():
                self._interrupt()
            report = self.stepper.step(s.batch)
            if report.problem:
                if not self._non_finite(report):
                    return False
            elif not report.pending:
                for r in runs:
                    r.state.consecutive_skips = 0
            for r in runs:
                st = r.state
                st.batch, st.step, st.window_points = st.batch + 1, st.step + 1, st.window_points + report.points
            bar.update(1)
            if s.step % LOG_EVERY_STEPS == 0 or s.batch == self.bpe:
                if not self._settle():
                    return False
                self._log_window(bar)
            # A step checkpoint due at the epoch's last batch is taken after the epoch ends.
            if cfg.checkpoint_every_steps and s.step % cfg.checkpoint_every_steps == 0 and s.batch < self.bpe:
                if not self._checkpoint():
                    return False
            if cfg.valid_every_steps and (s.step % cfg.valid_every_steps == 0 or self._budget_spent()):
                if not self._settle():
                    return False
                self._validate()
                if self._patience_spent():
                    break
        if s.batch < self.bpe:  # stopped within the epoch: the update budget or early stopping
            if not self._checkpoint():
                return False
            if self._stop_requested():
                self._interrupt()
            return True
        step_due = bool(cfg.checkpoint_every_steps) and s.step % cfg.checkpoint_every_steps == 0
        for r in runs:
            r.method.after_epoch(r.state.epoch)
            r.state.epoch, r.state.batch = r.state.epoch + 1, 0
        if not cfg.valid_every_steps and validation_due(s.epoch, cfg.valid_every, cfg.epochs):
            self._validate()
        if (s.epoch % cfg.checkpoint_every == 0 or s.epoch == cfg.epochs or step_due
                or self._patience_spent() or self._budget_spent()):
            if not self._checkpoint():
                return False
        if self._stop_requested():
            self._interrupt()
        return True

    # the metrics window ----------------------------------------------------------------------------
    def _log_window(self, bar: tqdm) -> None:
        self.stepper.flush()
        seconds = max(time.perf_counter() - self.window_start, 1e-9)
        for r in self.runs:
            record = window_record(r.state, r.state.window_points / seconds)
            r.append_metrics(record)
            r.state.window, r.state.window_points = {}, 0
        # points/s in a record is the run's own; the bar shows all runs' together
        bar.set_postfix(epoch=self.clock.epoch, loss=f"{record.get('loss_theta', float('nan')):.2f}",
                        pts_s=f"{len(self.runs) * record['points_per_sec']:.0f}")
        self.window_start = time.perf_counter()

    # checkpoints and the non-finite policy ---------------------------------------------------------
    def _save_all(self) -> None:
        self.stepper.flush()
        for i, r in enumerate(self.runs):
            self.stepper.export(i)
            r.state.elapsed = time.perf_counter() - self.started
            r.save()

    def _checkpoint(self) -> bool:
        """Save every run; False when a refused (non-finite) state was rolled back instead."""
        if not self._settle():
            return False
        try:
            self._save_all()
        except NonFiniteError as err:
            decision = self.policy.on_checkpoint(self.clock, str(err))
            if decision.action is not Action.ROLL_BACK or len(self.runs) > 1:
                if decision.message == str(err):
                    raise
                raise NonFiniteError(decision.message) from err
            self.runs[0].roll_back(decision.message)
            return False
        return True

    def _settle(self) -> bool:
        """At a record point: act, in step order, on the outcomes of the steps the stepper had not settled
        yet (the device decision: training/steppers.py); False when one of them rolled back."""
        for report in self.stepper.settle():
            if report.problem:
                if not self._non_finite(report):
                    return False
            else:
                self.runs[report.run].state.consecutive_skips = 0
        return True

    def _non_finite(self, report: StepReport) -> bool:
        """Act on the policy's decision about a non-finite step; False when it rolled back."""
        run = self.runs[report.run]
        what = report.problem if len(self.runs) == 1 else f"{report.problem} of seed {run.config.seed}"
        decision = self.policy.on_step(run.state, what, run.where(report.at), self.folders, report.at)
        if decision.action is Action.SKIP:
            run.append_metrics(decision.record)
            run.log(decision.message)
            return True
        if decision.action is Action.ROLL_BACK and len(self.runs) == 1:
            run.roll_back(decision.message)
            return False
        raise NonFiniteError(decision.message)

    # stop requests -----------------------------------------------------------------------------------
    def _stop_requested(self) -> bool:
        # Every rank must stop at the same step (a checkpoint is a collective): agree on it.
        if self.parallel is None:
            return self.stop.requested
        return bool(self.parallel.any_rank("stop" if self.stop.requested else ""))

    def _interrupt(self) -> None:
        """Honour a stop request: checkpoint every run at the state reached (unless just written), stop."""
        self._settle()  # (a rollback here leaves the restored state to be saved)
        s = self.clock
        s.elapsed = time.perf_counter() - self.started
        if any(r.saved_at != (r.state.epoch, r.state.step) for r in self.runs):
            self._save_all()
        name = self.stop.name or "stop request"
        path = self.runs[0].run.checkpoints / checkpoint_name(s.step)
        if len(self.runs) > 1:
            commands = "\n".join(f"  {resume_command(f)}" for f in self.folders)
            raise TrainingInterrupted(
                name, path,
                f"training of {len(self.runs)} vectorised seeds stopped by {name} after step {s.step} (epoch "
                f"{s.epoch}, batch {s.batch}); every seed's checkpoint written. Resume each seed alone with:\n"
                f"{commands}")
        raise TrainingInterrupted(
            name, path,
            f"training stopped by {name} after step {s.step} (epoch {s.epoch}, batch {s.batch} of "
            f"{self.bpe}); checkpoint written: {path}\nResume with:\n  {resume_command(self.folders[0])}"
            + (f" --nproc {self.parallel.world}" if self.parallel is not None else ""),
        )
