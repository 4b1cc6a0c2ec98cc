"""The one training step: guards in extra per-group steps, and the observed-data mask passed to the
method only when there is one."""

from __future__ import annotations

import torch
from torch import Tensor
from training_helpers import binary_data

from deepem.methods.base import PHI, THETA, MethodOutput
from deepem.methods.iwae import IWAE
from deepem.models.config import ModelConfig, make_model
from deepem.models.lvm import DeepLatentModel
from deepem.training.config import TrainConfig
from deepem.training.optim import GroupOptim
from deepem.training.step import TrainStep
from deepem.training.trainer import Trainer


def tiny_model() -> DeepLatentModel:
    torch.manual_seed(0)
    return make_model(ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli"), 16)


class NaNOnSecondCall(IWAE):
    """φ's loss is NaN from the second forward pass on: the extra φ step must be refused."""

    def __init__(self) -> None:
        super().__init__(particles=2)
        self.calls = 0

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        out = super().forward(model, x, mask, generator=generator)
        self.calls += 1
        if self.calls > 1:
            out.losses = {THETA: out.losses[THETA], PHI: out.losses[PHI] * float("nan")}
        return out


def adam_steps(opt: torch.optim.Optimizer) -> int:
    state = opt.state.get(opt.param_groups[0]["params"][0], {})
    return int(state["step"]) if "step" in state else 0


def test_a_non_finite_extra_step_is_refused_and_reported():
    model = tiny_model()
    step = TrainStep(model, NaNOnSecondCall(), {THETA: GroupOptim(lr=1e-2), PHI: GroupOptim(lr=1e-2, steps=3)})
    result = step(binary_data().train[:10])
    assert "loss 'phi'" in result.problem and "extra step of group 'phi'" in result.problem
    assert result.output is not None  # the joint step was applied
    assert (adam_steps(step.optimizers[THETA]), adam_steps(step.optimizers[PHI])) == (1, 1)
    assert all(p.grad is None for p in model.parameters())


class Masked(IWAE):
    """Records the masks it is given and reads observed values only."""

    def __init__(self) -> None:
        super().__init__(particles=2)
        self.masks: list[Tensor | None] = []

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        self.masks.append(mask)
        return super().forward(model, x if mask is None else torch.where(mask, x, 0.0), generator=generator)


def test_the_mask_reaches_the_method_batch_by_batch_and_only_when_given(tmp_path):
    x = binary_data().train[:40].clone()
    mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) > 0.2
    x[~mask] = float("nan")  # missing values are never read
    model, method = tiny_model(), Masked()
    model.likelihood.check_data = lambda x, mask=None: None  # (the model layer's masked check: the lead's)
    settings = TrainConfig(epochs=1, batch_size=20, valid_every=0)
    trainer = Trainer(model, method, x, tmp_path / "run", settings, train_mask=mask, progress=False,
                      log=lambda s: None)
    trainer.start()
    trainer.fit()
    assert len(method.masks) == 2 and all(m is not None and m.shape == (20, 16) for m in method.masks)
    assert int(sum(m.sum() for m in method.masks)) == int(mask.sum())  # every row once, its own mask
    assert all(torch.isfinite(p).all() for p in model.parameters())

    plain = Masked()
    Trainer(tiny_model(), plain, binary_data().train[:40], tmp_path / "run2", settings, progress=False,
            log=lambda s: None).step(binary_data().train[:20])
    assert plain.masks == [None]


class _RecordsFlush(IWAE):
    """Records whether the calling thread flushes denormals while the method runs."""

    def __init__(self) -> None:
        super().__init__(particles=2)
        self.flushing: list[bool] = []

    def forward(self, model, x, mask=None, *, generator=None):
        from deepem.inference.denormals import mxcsr_flushes

        self.flushing.append(mxcsr_flushes())
        return super().forward(model, x, mask, generator=generator)


def test_the_step_flushes_denormals_on_cpu_and_restores_the_callers_setting():
    import pytest

    from deepem.inference.denormals import mxcsr_flushes, thread_wide_flush_supported

    if not thread_wide_flush_supported():
        pytest.skip("flush-to-zero on every thread needs x86-64 Linux with libgomp")
    method = _RecordsFlush()
    step = TrainStep(tiny_model(), method)
    assert not mxcsr_flushes()
    assert step(torch.bernoulli(torch.full((4, 16), 0.3))).problem == ""
    assert method.flushing == [True] and not mxcsr_flushes()
