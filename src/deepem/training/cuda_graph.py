"""A TrainStep replayed as one CUDA graph (`GraphedStep`): the forward pass, every backward pass, the
non-finite flag and the fused Adam updates that read it, and `after_update`, launched as one graph
instead of some hundreds of kernels, each with its Python and launch cost.

Only the device decision (training/devices.py) can be captured: the host decision reads a flag in the
middle of the step, which a graph cannot hold. Each call is exactly one step, as the eager step's:

- the first `warmup` calls are eager steps on a side stream (they create Adam's state and let the
  libraries pick their kernels, which capture requires);
- the next call captures the step on its batch's shape (capture runs nothing) and replays it once;
- later calls copy their batch into the captured one and replay; a batch of another shape (the
  epoch's last, shorter batch) takes an eager step instead, and the graph stays for the next batch;
- a learning rate that changed (a schedule, a rollback) or optimiser state that was replaced (a
  checkpoint restored) is captured again: a graph holds the rates and the memory it was captured with.

The result of a replay is copied out of the graph's memory (the losses, diagnostics, log-weights and
the flag), so that it outlives the next replay; its diagnosis (`StepResult.settled`) reads the graph's
batch and gradients, so it must be asked before the next call, as for the eager step.

A method whose forward pass reads a value on the host cannot be captured: CUDA refuses the read while
capturing, so the capture fails with CUDA's error rather than replaying a stale value. No built-in method
reads one under the device decision (IWEM's α, AIWAE's temperatures and REM's Cholesky retries are
device-side: tests/training/test_device_decision.py runs every registered method's step with host reads
refused).

The trainer replays its step so with `cuda_graph` (`--cuda-graph`, `graphed_step` checks that it can);
then the loop reads the steps' flags only at its record points (training/steppers.py), so each replay
copies out what a later diagnosis reads (`TrainStep.keep_evidence`).

Not yet measured on a GPU (docs/speed.md says so): benchmarks/gpu.py times it against the eager step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from deepem.errors import UserError
from deepem.methods.base import MethodOutput
from deepem.training.devices import device_decision_blocker
from deepem.training.step import Evidence, StepResult, TrainStep

#: a capture: runs `body` into a graph and returns (what body returned, replay)
Capture = Callable[[Callable[[], StepResult]], tuple[StepResult, Callable[[], None]]]


class CudaGraphError(UserError, ValueError):
    """`--cuda-graph` cannot serve this run; the message says why."""


def graphed_step(step: TrainStep, compile: bool = False) -> GraphedStep:
    """The trainer's `step` replayed as a CUDA graph, or CudaGraphError (one line) when it cannot be: not on
    CUDA, compiled, or deciding on the host (several optimiser steps per group, data-parallel ranks)."""
    if step.device.kind != "cuda":
        raise CudaGraphError(f"--cuda-graph needs a CUDA device (--device cuda); this run trains on "
                             f"{step.device.kind}")
    if compile:
        raise CudaGraphError("--cuda-graph and --compile cannot be used together; choose one")
    if step.decision != "device":
        blocker = device_decision_blocker(step.optimizers, {g: s.steps for g, s in step.settings.items()},
                                          step.grad_sync is not None) or "the step decides on the host"
        raise CudaGraphError(f"--cuda-graph replays a step that decides on the GPU, and this one cannot: {blocker}")
    return GraphedStep(step)


def cuda_capture(body: Callable[[], StepResult]) -> tuple[StepResult, Callable[[], None]]:
    """`body` captured as a CUDA graph (nothing runs); its static result and the graph's replay."""
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        result = body()
    return result, graph.replay


class GraphedStep:
    """`step` (a TrainStep with the device decision) called as a CUDA graph; see the module's text.
    `capture` and `side_stream` are CUDA's unless given (tests give CPU stand-ins)."""

    def __init__(self, step: TrainStep, warmup: int = 3, capture: Capture | None = None,
                 side_stream: Callable[[], Any] | None = None) -> None:
        if step.decision != "device":
            raise ValueError("a CUDA graph holds the device decision only; this step decides on the host "
                             "(training/devices.py)")
        if capture is None and step.device.kind != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; this step runs on {step.device.kind}")
        self.step = step
        self.warmup = warmup
        self._capture = capture or cuda_capture
        self._side_stream = side_stream or _cuda_side_stream
        self._eager_calls = 0
        self._key: tuple | None = None
        self._replay: Callable[[], None] | None = None
        self._static: StepResult | None = None
        self._inputs: tuple[Tensor, Tensor | None] | None = None
        self._grads: list[tuple[torch.nn.Parameter, Tensor]] = []
        #: how each call went, for tests and benchmarks: 'warm-up', 'capture', 'replay' or 'eager'
        self.last = ""

    def __call__(self, x: Tensor, mask: Tensor | None = None) -> StepResult:
        shape, held = self._key_of(x, mask)
        if self._replay is not None and self._key == (shape, held):
            self.last = "replay"
            return self._replayed(x, mask)
        if self._replay is not None and self._key[0] != shape:
            self.last = "eager"
            return self.step(x, mask)
        if self._eager_calls < self.warmup:
            self._eager_calls += 1
            self.last = "warm-up"
            with self._side_stream():
                return self.step(x, mask)
        self._capture_step(x, mask)
        self.last = "capture"
        return self._replayed(x, mask)

    def _key_of(self, x: Tensor, mask: Tensor | None) -> tuple[tuple, tuple]:
        """(the batch's shape, what the graph holds of the optimisers: their rates, and their state
        objects, which a restored checkpoint replaces, as a rollback or a resume does)."""
        shape = (tuple(x.shape), x.dtype, None if mask is None else tuple(mask.shape))
        optimizers = self.step.optimizers.values()
        held = (tuple(g["lr"] for opt in optimizers for g in opt.param_groups),
                tuple(id(opt.state) for opt in optimizers))
        return shape, held

    def _capture_step(self, x: Tensor, mask: Tensor | None) -> None:
        self._inputs = (x.clone(), None if mask is None else mask.clone())
        optimizers = list(self.step.optimizers.values())
        for opt in optimizers:  # capture needs it; it is not left set, so checkpoints stay as they were
            for g in opt.param_groups:
                g["capturable"] = True
        try:
            self._static, self._replay = self._capture(lambda: self.step(*self._inputs))
        finally:
            for opt in optimizers:
                for g in opt.param_groups:
                    g["capturable"] = False
        self._key = self._key_of(x, mask)
        # the gradients the graph writes into (an eager step or a diagnosis in between detaches them)
        self._grads = [(p, p.grad) for params in self.step.groups.values() for p in params if p.grad is not None]

    def _replayed(self, x: Tensor, mask: Tensor | None) -> StepResult:
        static_x, static_mask = self._inputs
        static_x.copy_(x)
        if mask is not None:
            static_mask.copy_(mask)
        for p, grad in self._grads:
            p.grad = grad
        self._replay()
        out = self._static.output
        copied = MethodOutput({g: loss.detach().clone() for g, loss in out.losses.items()},
                              {k: v.clone() if isinstance(v, Tensor) else v for k, v in out.diagnostics.items()},
                              None if out.log_w is None else out.log_w.detach().clone())

        kept = self._static.evidence
        if kept is not None:  # asked after later replays: the caller's batch and copies of the graph's values
            evidence = Evidence(x, mask, copied, kept.grads, kept.grad_sizes.clone())
            return StepResult(copied, nonfinite=self._static.nonfinite.clone(),
                              diagnose=lambda: self.step.diagnose_evidence(evidence), evidence=evidence)

        def diagnose() -> StepResult:  # the graph's own diagnosis, with the copied output
            settled = self._static.diagnose()
            return StepResult(None if settled.output is None else copied, settled.problem, settled.skipped)
        return StepResult(copied, nonfinite=self._static.nonfinite.clone(), diagnose=diagnose)


def _cuda_side_stream() -> Any:
    """A context running its block on a fresh side stream, joined to the current one before and after
    (warm-up before a capture must not run on the default stream)."""
    return _SideStream()


class _SideStream:
    def __enter__(self) -> None:
        self.stream = torch.cuda.Stream()
        self.stream.wait_stream(torch.cuda.current_stream())
        self.context = torch.cuda.stream(self.stream)
        self.context.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.context.__exit__(*exc)
        torch.cuda.current_stream().wait_stream(self.stream)
