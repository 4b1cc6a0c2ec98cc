"""The `deepem train` command's logic: start or resume a run, train it, report where it is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deepem.training.config import TrainConfig
from deepem.training.run import RunFolder
from deepem.training.trainer import Trainer


def run_training(config: TrainConfig | None, out: Path, resume: bool = False, force: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print) -> int:
    """Train `config` into `out`, or with resume=True continue the run in `out` from its config.
    Returns the process exit code."""
    if resume:
        run = RunFolder(out)
        config = TrainConfig.from_dict(run.read_config())
        trainer = Trainer(config, out, log=log, progress=progress)
        if not trainer.resume():
            log(f"no checkpoint in {out} yet: starting its training from the beginning")
    else:
        assert config is not None
        trainer = Trainer(config, out, log=log, progress=progress)
        trainer.start(force=force)
    summary = trainer.fit()
    log(f"trained {summary['epochs']} epochs ({summary['steps']} steps) in {summary['seconds']:.1f} s; "
        f"run folder {out}; evaluate with: deepem evaluate {out}")
    return 0
