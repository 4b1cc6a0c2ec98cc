"""The one optimisation step of every method, used by the trainer and timed by the benchmarks.

Each loss is differentiated with respect to its own parameter group only, and each group has its own
optimiser (as in the papers, e.g. REM's separate θ and φ learning rates). Nothing reaches the
parameters unless the batch, every loss, the log-weights and every gradient are finite; what to do
about a non-finite step (stop, skip, roll back) is the caller's policy, not the step's. Where the
finiteness is decided is chosen once per step (training/devices.py): on the host (CPU: one read of one
flag) or on the device (CUDA: the fused Adam kernels read the flag, no host read; `StepResult.settled`
gives the same account afterwards).

Steps per batch. First one joint step: one forward pass of the method, each loss back-propagated to
its group, every optimiser stepped once, `method.after_update()`. Then, for each group g whose
`steps` is n > 1, n - 1 more steps on the same batch, in the order of the method's groups: each is a
fresh forward pass of the method (new particles from the RNG, the method's state as the joint step
left it), only loss g back-propagated, only g's optimiser stepped; the other groups' parameters and
optimiser states do not move. (AVB's discriminator takes several steps per generator step this way.)

Precision (training/precision.py): in the method's forward pass the networks compute in the precision's
type (autocast inside the networks only); the backward pass, the finiteness checks and the optimiser
steps run on float32 parameters.
With loss scaling (`16-mixed`), each loss is scaled before its backward pass and the gradients are
unscaled before they are checked; non-finite gradients from finite losses are an overflow of the
scale: the step is skipped (`StepResult.skipped`) and the scale lowered, not reported as a problem (with a
data-parallel hook, where every rank must agree, it is reported as a non-finite gradient instead). The
scaler's state (its scale and growth counter) is checkpointed with the optimisers (checkpoint_contents.py),
so a resumed `16-mixed` run goes on with the scale it had."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from deepem.methods.base import Method, MethodOutput, device_generator
from deepem.models.lvm import DeepLatentModel
from deepem.training.compiled import compiled
from deepem.training.devices import DECISIONS, device_decision_blocker, step_device
from deepem.training.guards import (
    first_non_finite_grad,
    losses_and_grads_finite,
    non_finite_input,
    non_finite_losses,
    parameter_names,
)
from deepem.training.optim import GroupOptim, group_settings, make_optimizers, parameter_groups
from deepem.training.precision import Precision, check_precision, make_grad_scaler, mixed_precision


@dataclass
class StepResult:
    """The joint step's output, or `problem`: a description of the first non-finite value ('' if none).
    With a problem in the joint step nothing was applied; in an extra step, the joint step and earlier
    extra steps were applied and the remaining extra steps were not taken."""

    output: MethodOutput | None
    problem: str = ""
    #: loss scaling only: the gradients overflowed the scale, nothing was applied and the scale was lowered
    skipped: bool = False
    #: the device decision only (training/devices.py): a 0-dim device tensor, 1 when the step found a
    #: non-finite value and applied nothing; `problem` and `skipped` are then known after `settled()`
    nonfinite: Tensor | None = None
    #: the device decision only: the host-side account of a non-finite step (reads inputs and gradients)
    diagnose: Callable[[], StepResult] | None = None
    #: the device decision with `TrainStep.keep_evidence` only: what `diagnose` reads
    evidence: Evidence | None = None

    def settled(self) -> StepResult:
        """This result with `problem` and `skipped` filled in: itself after a host decision; after a device
        decision one read of the flag (a synchronisation), and the diagnosis when it is set. Call it before
        the step's next call (the diagnosis reads this step's gradients), or any time later when the step
        keeps its evidence (`TrainStep.keep_evidence`)."""
        if self.nonfinite is None:
            return self
        if not bool(self.nonfinite):
            return StepResult(self.output)
        return self.diagnose()


@dataclass
class Evidence:
    """What a device-decided step keeps for a diagnosis asked after later steps (`TrainStep.keep_evidence`):
    its batch, its output (detached), its gradients' (group, parameter name, shape) and their largest
    magnitudes, a device tensor."""

    x: Tensor
    mask: Tensor | None
    output: MethodOutput
    grads: list[tuple[str, str, tuple[int, ...]]]
    grad_sizes: Tensor


def backward_losses(losses: Mapping[str, Tensor], groups: Mapping[str, list[nn.Parameter]],
                    scale: Callable[[Tensor], Tensor] | None = None) -> None:
    """Accumulate into each group's .grad the gradient of that group's loss alone (of `scale(loss)`
    with a loss scaler).

    Groups that share one loss tensor (VAE, IWAE) get a single backward pass over all their
    parameters; distinct losses get one pass each, keeping the graph until the last."""
    by_loss: list[tuple[Tensor, list[nn.Parameter]]] = []
    for name, loss in losses.items():
        if name not in groups:
            raise ValueError(f"a loss was returned for parameter group {name!r}, which has no optimiser")
        for entry in by_loss:
            if entry[0] is loss:
                entry[1].extend(groups[name])
                break
        else:
            by_loss.append((loss, list(groups[name])))
    for i, (loss, params) in enumerate(by_loss):
        needing = [p for p in params if p.requires_grad]
        if loss.requires_grad and needing:
            (loss if scale is None else scale(loss)).backward(inputs=needing, retain_graph=i < len(by_loss) - 1)


def zero_grads(params: Iterable[nn.Parameter]) -> None:
    for p in params:
        p.grad = None


class TrainStep:
    """A bound method's parameter groups, their optimisers, and the guarded step over a batch.

    `settings` gives each group's optimiser settings (training/optim.py); without it every group gets
    Adam(lr, betas (0.9, 0.999), eps adam_eps) and one step per batch. `precision` is the step's
    precision (training/precision.py), checked here against the model's device and dtype. `decision`:
    where the non-finite decision is made, 'host' or 'device' (training/devices.py; None: the device's
    own, chosen here once, as is the region every step runs in). `compile`: the forward and backward
    passes compiled by torch.compile (training/compiled.py)."""

    def __init__(self, model: DeepLatentModel, method: Method,
                 settings: Mapping[str, GroupOptim] | None = None, lr: float = 1e-3,
                 adam_eps: float = 1e-4, precision: str | Precision = "32", decision: str | None = None,
                 compile: bool = False) -> None:
        self.model = model
        self.method = method
        self.groups = parameter_groups(model, method)
        self.settings = dict(settings) if settings is not None else group_settings(list(self.groups), {}, lr,
                                                                                   adam_eps)
        missing = [g for g in self.groups if g not in self.settings]
        if missing:
            raise ValueError(f"no optimiser settings for parameter groups {missing}")
        self.optimizers = make_optimizers(self.groups, self.settings)
        self.names = parameter_names(model, method)
        first = next(model.parameters())
        self.precision = check_precision(precision, first.device, first.dtype)
        self.scaler = make_grad_scaler(self.precision, first.device)
        self.device = step_device(first.device)
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        self._asked = decision
        self._grad_sync: Callable[[list[nn.Parameter], str], str] | None = None
        #: the device decision only: the caller settles results after later steps (training/steppers.py
        #: reads the flags at the record points only), so each step keeps what its diagnosis needs: its
        #: batch, its output and one flag per gradient (its gradients are gone by then)
        self.keep_evidence = False
        self._choose_path()
        if compile:  # (the instance's own _forward: the eager step looks up the class's, at no cost)
            self._forward = compiled(self._forward, first.device)

    @property
    def grad_sync(self) -> Callable[[list[nn.Parameter], str], str] | None:
        """Data-parallel hook: (parameters, local problem) -> agreed problem, gradients averaged if none.
        Setting it chooses the step's path again (ranks agree on the host)."""
        return self._grad_sync

    @grad_sync.setter
    def grad_sync(self, hook: Callable[[list[nn.Parameter], str], str] | None) -> None:
        self._grad_sync = hook
        self._choose_path()

    def _choose_path(self) -> None:
        """Bind the step's one path: the host decision or the device decision (training/devices.py)."""
        blocker = device_decision_blocker(self.optimizers, {g: s.steps for g, s in self.settings.items()},
                                          self._grad_sync is not None)
        wanted = self._asked or self.device.decision
        if wanted == "device" and blocker and self._asked == "device":
            raise ValueError(f"the device decision cannot run this step: {blocker}")
        self.decision = "device" if wanted == "device" and not blocker else "host"
        self.method.host_reads = self.decision == "host"  # (the device decision waits for nothing)
        self._path = self._device_step if self.decision == "device" else self._step

    def zero_grad(self) -> None:
        for params in self.groups.values():
            zero_grads(params)

    def __call__(self, x: Tensor, mask: Tensor | None = None) -> StepResult:
        # The region is the device's (training/devices.py; on CPU denormals flushed on every thread):
        # whoever calls the step, the loop or a benchmark, gets the speed the loop gets.
        with self.device.region():
            return self._path(x, mask)

    def _step(self, x: Tensor, mask: Tensor | None) -> StepResult:
        """The host decision: one read of a flag over losses, log-weights and gradients."""
        self.zero_grad()
        bad = non_finite_input(x, mask)
        if bad and self.grad_sync is None:
            return StepResult(None, bad)
        out = None if bad else self._forward(x, mask)
        if not bad:
            self._backward(out.losses, self.groups)
            # One synchronisation for losses, log-weights and gradients together; only when it fails
            # are they searched one by one (a non-finite loss makes non-finite gradients).
            if not losses_and_grads_finite(out, self.groups):
                bad = non_finite_losses(out)
                if not bad and self.scaler is not None and self.grad_sync is None:
                    return self._skip_overflow(out)
                bad = bad or first_non_finite_grad(self.groups, self.names)
        bad = self._sync(self.groups, bad)
        if bad:
            self.zero_grad()
            return StepResult(None, bad)
        self._apply(out.losses)
        self.method.after_update()
        for group, setting in self.settings.items():
            for _ in range(setting.steps - 1):
                bad = self._extra_step(group, x, mask)
                if bad:
                    self.zero_grad()
                    return StepResult(out, f"{bad} (in an extra step of group {group!r})")
        return StepResult(out)

    def _device_step(self, x: Tensor, mask: Tensor | None) -> StepResult:
        """The device decision: the same checks as `_step` as one device flag, which the fused Adam
        kernels read (found-inf: no update, no step count), and which keeps the method's buffers as they
        were before `after_update`; nothing here waits for the device."""
        self.zero_grad()
        out = self._forward(x, mask)
        self._backward(out.losses, self.groups)
        found = self._found_non_finite(x, mask, out)
        for name in out.losses:
            optimizer = self.optimizers[name]
            optimizer.found_inf, optimizer.grad_scale = found, None  # (gradients unscaled already)
            try:
                optimizer.step()
            finally:
                del optimizer.found_inf, optimizer.grad_scale
        if self.scaler is not None:
            self.scaler.update()  # lowers the scale when unscale_ found the gradients overflowed
        self._after_update_unless(found)
        if self.keep_evidence:
            kept = self._evidence(x, mask, out)  # (its output without the graph: the result may be kept a while)
            return StepResult(kept.output, nonfinite=found, diagnose=lambda: self.diagnose_evidence(kept),
                              evidence=kept)
        return StepResult(out, nonfinite=found, diagnose=lambda: self._diagnose(x, mask, out))

    def _found_non_finite(self, x: Tensor, mask: Tensor | None, out: MethodOutput) -> Tensor:
        """A fresh 0-dim float32 device tensor: 1 when the batch, a loss, the log-weights or a gradient is
        not finite. The batch, losses and log-weights enter as sums (fresh tensors: the check writes
        back what it reads), so a sum of finite values beyond float32's range also counts."""
        observed = x if mask is None else x.masked_fill(~mask, 0)
        sums = [observed.sum()] if x.is_floating_point() else []
        sums += [loss.detach().sum() for loss in {id(v): v for v in out.losses.values()}.values()]
        if out.log_w is not None:
            sums.append(out.log_w.detach().sum())
        grads = [p.grad for params in self.groups.values() for p in params if p.grad is not None]
        found = torch.zeros((), device=x.device)
        torch._amp_foreach_non_finite_check_and_unscale_(sums + grads, found, torch.ones((), device=x.device))
        return found

    def _after_update_unless(self, found: Tensor) -> None:
        """`method.after_update()`, undone on the device when `found` is set: the method's per-update
        state (annealing counters, running means, step sizes) lives in its buffers."""
        buffers = list(self.method.buffers())
        if not buffers:
            self.method.after_update()
            return
        before = [b.clone() for b in buffers]
        self.method.after_update()
        keep = found.bool()
        for b, old in zip(buffers, before, strict=True):
            b.copy_(torch.where(keep, old, b))

    def _diagnose(self, x: Tensor, mask: Tensor | None, out: MethodOutput) -> StepResult:
        """The host's account of a step the device found non-finite, as `_step` gives it."""
        bad = non_finite_input(x, mask) or non_finite_losses(out)
        if not bad and self.scaler is not None:
            self.zero_grad()
            return StepResult(out, skipped=True)  # the loss scale overflowed (and was lowered)
        bad = bad or first_non_finite_grad(self.groups, self.names) or (
            "a sum of the batch, the losses or the log-weights (finite values beyond float32's range)")
        self.zero_grad()
        return StepResult(None, bad)

    def _evidence(self, x: Tensor, mask: Tensor | None, out: MethodOutput) -> Evidence:
        """What `diagnose_evidence` reads, computed on the device (nothing read here): the batch, the output
        without its graph, and each gradient's largest magnitude (not finite exactly when the gradient is not)."""
        with_grads = [(group, p) for group, params in self.groups.items() for p in params if p.grad is not None]
        sizes = torch.stack(torch._foreach_norm([p.grad for _, p in with_grads], float("inf"))) if with_grads \
            else torch.zeros(0, device=x.device)
        output = MethodOutput({g: loss.detach() for g, loss in out.losses.items()}, out.diagnostics,
                              None if out.log_w is None else out.log_w.detach())
        return Evidence(x, mask, output, [(g, self.names.get(id(p), "?"), tuple(p.shape)) for g, p in with_grads],
                        sizes)

    def diagnose_evidence(self, kept: Evidence) -> StepResult:
        """`_diagnose` from the evidence a step kept: the same account, but a gradient is named without its
        counts of NaN and inf (the gradient itself was not kept)."""
        bad = non_finite_input(kept.x, kept.mask) or non_finite_losses(kept.output)
        if not bad and self.scaler is not None:
            return StepResult(kept.output, skipped=True)
        if not bad:
            finite = kept.grad_sizes.isfinite().tolist()
            bad = next((f"gradient of parameter {name} (shape {shape}, group {group!r}; not finite)"
                        for (group, name, shape), ok in zip(kept.grads, finite, strict=True) if not ok), "")
        return StepResult(None, bad or "a sum of the batch, the losses or the log-weights (finite values beyond "
                                       "float32's range)")

    def _forward(self, x: Tensor, mask: Tensor | None) -> MethodOutput:
        # Every draw comes from the run's generator, named explicitly (the same numbers as the global one);
        # the mask is passed only when there is one, so methods without a mask argument still work.
        generator = device_generator(x.device)
        with mixed_precision(self.precision):
            if mask is None:
                return self.method(self.model, x, generator=generator)
            return self.method(self.model, x, mask=mask, generator=generator)

    def _backward(self, losses: Mapping[str, Tensor], groups: Mapping[str, list[nn.Parameter]]) -> None:
        if self.scaler is None:
            backward_losses(losses, groups)
            return
        backward_losses(losses, groups, scale=self.scaler.scale)
        for name in losses:  # the checks and the data-parallel average see true gradients
            self.scaler.unscale_(self.optimizers[name])

    def _apply(self, losses: Mapping[str, Tensor]) -> None:
        """Step the optimisers of the groups that have a loss (through the scaler, which then adapts)."""
        for name in losses:
            if self.scaler is None:
                self.optimizers[name].step()
            else:
                self.scaler.step(self.optimizers[name])
        if self.scaler is not None:
            self.scaler.update()

    def _skip_overflow(self, out: MethodOutput) -> StepResult:
        """Finite losses, non-finite unscaled gradients: the loss scale overflowed; lower it, apply nothing."""
        self.zero_grad()
        self.scaler.update()
        return StepResult(out, skipped=True)

    def _extra_step(self, group: str, x: Tensor, mask: Tensor | None) -> str:
        """One more step of `group` alone on the same batch; a description of a non-finite value or ''."""
        params = self.groups[group]
        zero_grads(params)
        out = self._forward(x, mask)
        loss = out.losses.get(group)
        if loss is None:
            return ""
        bad = non_finite_losses(MethodOutput({group: loss}, log_w=out.log_w))
        if not bad:
            self._backward({group: loss}, {group: params})
            bad = first_non_finite_grad({group: params}, self.names)
            if bad and self.scaler is not None and self.grad_sync is None:  # the loss scale overflowed: skip
                zero_grads(params)
                self.scaler.update()
                return ""
        bad = self._sync({group: params}, bad)
        if not bad:
            self._apply({group: loss})
        return bad

    # data-parallel hook (training/distributed.py) ------------------------------------------------
    def _sync(self, groups: Mapping[str, list[nn.Parameter]], bad: str) -> str:
        """With a `grad_sync` hook (data-parallel training): let every rank agree on `bad` and, if
        nothing is bad, average the groups' gradients over ranks. Called after backward and before the
        optimiser steps, in the joint step and in every extra step."""
        if self.grad_sync is None:
            return bad
        return self.grad_sync([p for params in groups.values() for p in params], bad)


def make_step(model: DeepLatentModel, method: Method, lr: float | Mapping[str, float] = 1e-3,
              adam_eps: float = 1e-4, precision: str | Precision = "32", decision: str | None = None) -> TrainStep:
    """A TrainStep with plain per-group learning rates (a number for all groups, or one per group)."""
    if isinstance(lr, Mapping):
        return TrainStep(model, method, {g: GroupOptim(lr=float(v), eps=adam_eps) for g, v in lr.items()},
                         precision=precision, decision=decision)
    return TrainStep(model, method, lr=lr, adam_eps=adam_eps, precision=precision, decision=decision)

