"""Driver of the kill-and-resume tests (run as a script by test_resume.py, not collected by pytest).

It imports torch once and forks one child per training attempt, so a scenario of many kills costs
one interpreter start-up. Each child trains with `run_training` and is ended by a real signal sent
to itself from the batch hook at a chosen step (SIGKILL, or SIGTERM / SIGINT that the trainer must
honour), or by SIGKILL in the middle of writing its n-th checkpoint. The parent records how every
child ended and its output, and writes them as JSON.

usage: python resume_driver.py SPEC.json RESULT.json
SPEC: {"root": dir, "scenarios": [{"name", "method", "method_options", "cycles": [cycle, ...]}]}
cycle: {} (run to the end), {"kill_at_step": n}, {"sigterm_at_step": n}, {"sigint_at_step": n},
       {"kill_in_save": n}. Every scenario is also run once without interruption into <name>-ref."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)  # before any torch op: forking after a multi-threaded op can deadlock

from torch import Tensor  # noqa: E402

from deepem.data.base import DataSplits  # noqa: E402
from deepem.inference.numerics import log_mean_exp  # noqa: E402
from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw  # noqa: E402
from deepem.methods.registry import METHODS  # noqa: E402
from deepem.models.config import ModelConfig  # noqa: E402
from deepem.models.lvm import DeepLatentModel  # noqa: E402
from deepem.training import checkpoint_file as checkpoint_module  # noqa: E402
from deepem.training.config import TrainConfig  # noqa: E402
from deepem.workflows.train import run_training  # noqa: E402


class RngProbe(Method):
    """IWAE whose loss is scaled by a buffer fed from numpy's and Python's global generators after
    every update: a resumed run matches only if those generators (and the buffer) were restored."""

    name = "rngprobe"

    def __init__(self, particles: int = 3) -> None:
        super().__init__(particles)
        self.register_buffer("noise", torch.zeros((), dtype=torch.float64))

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        log_w = draw(model, x, self.particles, generator=generator).log_w
        loss = -log_mean_exp(log_w).mean() * (1.0 + 0.01 * float(self.noise))
        return MethodOutput({THETA: loss, PHI: loss}, {}, log_w)

    def after_update(self) -> None:
        self.noise += np.random.rand() + random.gauss(0.0, 1.0)  # noqa: NPY002 (the point of the probe)


METHODS.setdefault(RngProbe.name, RngProbe)
# The first optimiser built imports torch._dynamo (seconds): do it once here, not in every child.
torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def grey_data() -> DataSplits:
    """200 grey-level training points (dynamically binarised), 40 binary validation/test points."""
    gen = torch.Generator().manual_seed(7)
    prototypes = torch.rand(4, 16, generator=gen)
    labels = torch.randint(0, 4, (280,), generator=gen)
    grey = (0.8 * prototypes[labels] + 0.2 * torch.rand(280, 16, generator=gen)).clamp(0, 1)
    binary = torch.bernoulli(grey[200:], generator=gen)
    return DataSplits("grey-synthetic", grey[:200], binary[:40], binary[40:], "bernoulli",
                      dynamic_binarization=True)


def make_config(method: str, options: dict) -> TrainConfig:
    return TrainConfig(dataset="grey-synthetic", method=method, method_options={"particles": 3, **options},
                       model=ModelConfig(latent_dim=4, hidden=[16]), epochs=3, batch_size=20, lr=3e-3,
                       seed=11, valid_every=1, valid_particles=4, valid_limit=None, checkpoint_every_steps=4,
                       keep_checkpoints=2)


def _self_signal_hook(step_wanted: int, signum: int):
    def hook(step: int, x: Tensor) -> Tensor:
        if step == step_wanted:
            os.kill(os.getpid(), signum)
        return x
    return hook


def _kill_in_save(n: int) -> None:
    """Make the n-th checkpoint write of this process die half-way through its temporary file."""
    original = checkpoint_module.atomic_write_bytes
    calls = 0

    def dying_write(path: Path, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            with open(path.parent / f".{path.name}.killed.tmp", "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        original(path, data)

    checkpoint_module.atomic_write_bytes = dying_write


def child(config: TrainConfig, out: Path, resume: bool, cycle: dict, log_path: Path) -> int:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = sys.stdout
    hook = None
    for key, signum in (("kill_at_step", signal.SIGKILL), ("sigterm_at_step", signal.SIGTERM),
                        ("sigint_at_step", signal.SIGINT)):
        if key in cycle:
            hook = _self_signal_hook(cycle[key], signum)
    if "kill_in_save" in cycle:
        _kill_in_save(cycle["kill_in_save"])
    return run_training(None if resume else config, out, resume=resume, progress=False, data=grey_data(),
                        batch_hook=hook)


def attempt(config: TrainConfig, out: Path, resume: bool, cycle: dict, log_path: Path) -> dict:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child(config, out, resume, cycle, log_path)
        except BaseException as err:  # report, never return into the parent's code
            print(f"child failed: {type(err).__name__}: {err}", flush=True)
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    ended = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.WEXITSTATUS(status)}
    return {"cycle": cycle, **ended, "log": log_path.read_text()}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    root = Path(spec["root"])
    results = {}
    for sc in spec["scenarios"]:
        config = make_config(sc["method"], sc.get("method_options", {}))
        ref = attempt(config, root / f"{sc['name']}-ref", False, {}, root / f"{sc['name']}-ref.log")
        cycles = []
        for i, cycle in enumerate(sc["cycles"]):
            cycles.append(attempt(config, root / f"{sc['name']}-int", i > 0, cycle,
                                  root / f"{sc['name']}-int-{i}.log"))
        results[sc["name"]] = {"reference": ref, "cycles": cycles}
    Path(sys.argv[2]).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
