"""The one optimisation step of every method, used by the trainer and timed by the benchmarks.

Each loss is differentiated with respect to its own parameter group only, and each group has its own
optimiser (as in the papers, e.g. REM's separate θ and φ learning rates). Nothing reaches the
parameters unless the batch, every loss, the log-weights and every gradient are finite; what to do
about a non-finite step (stop, skip, roll back) is the caller's policy, not the step's.

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
from contextlib import nullcontext
from dataclasses import dataclass

from torch import Tensor, nn

from deepem.inference.numerics import flush_denormals
from deepem.methods.base import Method, MethodOutput, device_generator
from deepem.models.lvm import DeepLatentModel
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
    precision (training/precision.py), checked here against the model's device and dtype."""

    def __init__(self, model: DeepLatentModel, method: Method,
                 settings: Mapping[str, GroupOptim] | None = None, lr: float = 1e-3,
                 adam_eps: float = 1e-4, precision: str | Precision = "32") -> None:
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
        #: data-parallel hook: (parameters, local problem) -> agreed problem, gradients averaged if none
        self.grad_sync: Callable[[list[nn.Parameter], str], str] | None = None

    def zero_grad(self) -> None:
        for params in self.groups.values():
            zero_grads(params)

    def __call__(self, x: Tensor, mask: Tensor | None = None) -> StepResult:
        # On CPU the step runs with denormals flushed on every thread (inference/denormals.py): whoever calls
        # it, the loop or a benchmark, gets the speed the loop gets; the caller's setting is restored after.
        with flush_denormals() if x.device.type == "cpu" else nullcontext():
            return self._step(x, mask)

    def _step(self, x: Tensor, mask: Tensor | None) -> StepResult:
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
              adam_eps: float = 1e-4, precision: str | Precision = "32") -> TrainStep:
    """A TrainStep with plain per-group learning rates (a number for all groups, or one per group)."""
    if isinstance(lr, Mapping):
        return TrainStep(model, method, {g: GroupOptim(lr=float(v), eps=adam_eps) for g, v in lr.items()},
                         precision=precision)
    return TrainStep(model, method, lr=lr, adam_eps=adam_eps, precision=precision)

