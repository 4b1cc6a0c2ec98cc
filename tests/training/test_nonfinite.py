"""Non-finite values never reach the parameters: an injected NaN triggers each policy as documented
(stop with a diagnosis, skip, roll back with half the learning rate), the bounds on skipping and
rolling back hold, and a non-finite model is never written over a good checkpoint. The policy tests run
with the decision on the host (CPU's) and on the device (CUDA's, here on CPU tensors: training/devices.py)."""

from __future__ import annotations

import math

import pytest
import torch
from training_helpers import binary_data, tiny_config

from deepem.inference.numerics import log_mean_exp
from deepem.methods.base import PHI, THETA, Method, MethodOutput, draw
from deepem.methods.registry import METHODS
from deepem.training import step as step_module
from deepem.training.checkpoint_file import checkpoint_step, list_checkpoints, load_checkpoint
from deepem.training.devices import StepDevice
from deepem.training.guards import NonFiniteError
from deepem.training.trainer import Trainer
from deepem.workflows.assembly import build_trainer

POISON_STEP = 3  # checkpoints every 2 steps: the last good one before it is at step 2
STEPS = 10  # 2 epochs of 5 batches


def poison_at(steps: set[int], seen: list[int] | None = None, once: bool = False):
    """A batch hook that puts a NaN into the batches of `steps` (only the first time with once=True)."""
    hit: set[int] = set()

    def hook(step: int, x: torch.Tensor) -> torch.Tensor:
        if seen is not None:
            seen.append(step)
        if step in steps and not (once and step in hit):
            hit.add(step)
            x = x.clone()
            x[1, 2] = float("nan")
        return x
    return hook


@pytest.fixture(params=["host", "device"])
def decision(request, monkeypatch) -> str:
    """Every TrainStep built in the test makes its non-finite decision on the host, or on the device."""
    cpu = step_module.step_device("cpu")
    monkeypatch.setattr(step_module, "step_device", lambda device: StepDevice(cpu.kind, cpu.region, request.param))
    return request.param


def make_trainer(tmp_path, hook=None, **changes) -> Trainer:
    logs: list[str] = []
    trainer = build_trainer(tiny_config(**changes), tmp_path / "run", data=binary_data(), log=logs.append,
                            progress=False, batch_hook=hook)
    trainer.logs = logs
    trainer.start()
    return trainer


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_stop_policy_names_tensor_method_and_batch_and_writes_nothing(tmp_path, decision):
    trainer = make_trainer(tmp_path, poison_at({POISON_STEP}), nan_policy="stop")
    with pytest.raises(NonFiniteError) as info:
        trainer.fit()
    msg = str(info.value)
    assert "input batch (1 of 320 non-finite: 1 NaN, 0 inf; rows [1] of the batch)" in msg
    assert "method 'iwae'" in msg and "epoch 0, batch 3 of 5 (step 3)" in msg
    assert "--nan-policy skip|rollback" in msg
    # no checkpoint was written at or after the poisoned step
    assert max(checkpoint_step(p) for p in list_checkpoints(trainer.run.checkpoints)) == 2


def test_skip_policy_leaves_parameters_and_counters_untouched(tmp_path, decision):
    snapshots: dict[int, dict] = {}
    poison = poison_at({POISON_STEP})

    def hook(step, x):
        snapshots[step] = params(trainer)
        return poison(step, x)

    trainer = make_trainer(tmp_path, hook, nan_policy="skip", method="iwem",
                           method_options={"alpha_every": 1})
    assert trainer.step.decision == decision
    summary = trainer.fit()
    assert summary["skipped_steps"] == 1 and trainer.state.skipped_steps == 1
    # the skipped step changed no parameter ...
    for k in snapshots[POISON_STEP]:
        assert torch.equal(snapshots[POISON_STEP][k], snapshots[POISON_STEP + 1][k]), k
    # ... while the steps around it did
    assert not torch.equal(snapshots[POISON_STEP - 1]["decoder.0.weight"], snapshots[POISON_STEP]["decoder.0.weight"])
    # IWEM's annealing counter and Adam's step counters count only the updates applied
    assert int(trainer.method.anneal_count) == STEPS - 1
    for opt in trainer.optimizers.values():
        assert all(int(s["step"]) == STEPS - 1 for s in opt.state.values())
    assert trainer.state.step == STEPS
    assert any("step skipped" in line for line in trainer.logs)
    records = trainer.run.read_metrics()
    assert [r["action"] for r in records if r["kind"] == "nonfinite"] == ["skip"]


def test_skip_policy_gives_up_after_too_many_in_a_row(tmp_path, decision):
    trainer = make_trainer(tmp_path, poison_at(set(range(2, STEPS))), nan_policy="skip",
                           max_consecutive_skips=3)
    with pytest.raises(NonFiniteError, match="4 steps in a row were non-finite"):
        trainer.fit()


def test_rollback_restores_the_checkpoint_and_halves_the_learning_rate(tmp_path, decision):
    seen: list[int] = []
    at_two: list[dict] = []
    poison = poison_at({POISON_STEP}, seen, once=True)

    def hook(step, x):
        if step == 2:
            at_two.append(params(trainer))
        return poison(step, x)

    trainer = make_trainer(tmp_path, hook, nan_policy="rollback")
    summary = trainer.fit()
    # steps 2 and 3 ran twice: the loop went back to the step-2 checkpoint
    assert seen[:6] == [0, 1, 2, 3, 2, 3]
    assert len(at_two) == 2
    for k in at_two[0]:
        assert torch.equal(at_two[0][k], at_two[1][k]), k  # state restored exactly
    assert not list(trainer.run.checkpoints.glob("*.unusable"))  # no checkpoint was thought bad
    assert summary["rollbacks"] == 1 and summary["lr_scale"] == 0.5
    for opt in trainer.optimizers.values():
        assert all(math.isclose(g["lr"], 3e-3 * 0.5) for g in opt.param_groups)
    final = load_checkpoint(list_checkpoints(trainer.run.checkpoints)[-1])
    assert final["train_state"]["lr_scale"] == 0.5 and final["train_state"]["rollbacks"] == 1
    actions = [r for r in trainer.run.read_metrics() if r["kind"] == "nonfinite"]
    assert len(actions) == 1 and actions[0]["action"] == "rollback" and actions[0]["step"] == 2
    assert any("rolled back to ckpt-000000002.pt" in line for line in trainer.logs)


def test_rollback_gives_up_after_max_rollbacks(tmp_path, decision):
    trainer = make_trainer(tmp_path, poison_at({POISON_STEP}), nan_policy="rollback", max_rollbacks=2)
    with pytest.raises(NonFiniteError, match=r"gave up after 2 rollbacks \(max_rollbacks = 2, "
                                             r"learning-rate scale now 0.25\)"):
        trainer.fit()


def test_a_non_finite_model_is_never_checkpointed(tmp_path):
    trainer = make_trainer(tmp_path)
    before = {p.name: p.read_bytes() for p in list_checkpoints(trainer.run.checkpoints)}
    with torch.no_grad():
        trainer.model.decoder[0].weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"refusing to write a checkpoint: model.decoder.0.weight"):
        trainer.save()
    after = {p.name: p.read_bytes() for p in list_checkpoints(trainer.run.checkpoints)}
    assert after == before


class _Poisoned(Method):
    """IWAE, except that its `kind` of output goes bad on the 3rd call."""

    name = "poisoned"

    def __init__(self, particles: int = 3, kind: str = "loss") -> None:
        super().__init__(particles)
        self.kind = kind
        self.calls = 0

    def forward(self, model, x, mask=None, *, generator=None):
        self.calls += 1
        log_w = draw(model, x, self.particles, generator=generator).log_w
        loss = -log_mean_exp(log_w).mean()
        bad = self.calls == 3
        if bad and self.kind == "loss":
            loss = loss * float("nan")
        if bad and self.kind == "log_w":
            log_w = log_w.detach().clone()
            log_w[0, 0] = float("inf")
        if bad and self.kind == "grad":
            w = model.decoder[0].weight
            loss = loss + (w - w.detach()).abs().sqrt().sum()  # value 0, gradient 0 * inf = NaN
        return MethodOutput({THETA: loss, PHI: loss}, {}, log_w)


@pytest.mark.parametrize("kind, expected", [
    ("loss", "non-finite loss 'theta' (value nan)"),
    ("log_w", "non-finite log-weights (1 of 60 non-finite: 0 NaN, 1 inf)"),
    ("grad", "non-finite gradient of parameter decoder.0.weight (shape (16, 4), group 'theta'; 64 of 64 "
             "non-finite: 64 NaN, 0 inf)"),
])
def test_stop_diagnosis_names_loss_log_weights_or_gradient(tmp_path, decision, monkeypatch, kind, expected):
    monkeypatch.setitem(METHODS, "poisoned", _Poisoned)
    trainer = make_trainer(tmp_path, method="poisoned", method_options={"kind": kind})
    before = params(trainer)
    with pytest.raises(NonFiniteError) as info:
        trainer.fit()
    if decision == "device" and kind == "grad":  # (the gradient is not kept past its step: no counts)
        expected = "non-finite gradient of parameter decoder.0.weight (shape (16, 4), group 'theta'; not finite)"
    assert expected in str(info.value)
    assert "method 'poisoned', epoch 0, batch 2 of 5 (step 2)" in str(info.value)
    ckpt = load_checkpoint(trainer.run.checkpoints / "ckpt-000000002.pt")
    assert max(checkpoint_step(p) for p in list_checkpoints(trainer.run.checkpoints)) == 2
    assert not torch.equal(before["decoder.0.weight"], ckpt["model"]["decoder.0.weight"])
    if decision == "host":
        # the two good steps changed the parameters; the bad one was stopped before the update: the
        # parameters now equal those of the step-2 checkpoint
        for k, v in params(trainer).items():
            assert torch.equal(v, ckpt["model"][k]), k
    else:
        # the device decision stops at the next record point (the step-4 checkpoint, not written): step 3,
        # a good one, was applied in memory in between
        assert trainer.state.step == 4 and trainer.method.calls == 4
        assert not torch.equal(params(trainer)["decoder.0.weight"], ckpt["model"]["decoder.0.weight"])


def test_grad_check_names_a_bad_gradient_and_passes_finite_ones_whose_sum_overflows() -> None:
    from torch import nn

    from deepem.training.guards import first_non_finite_grad

    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, 2))
    a.grad = torch.tensor([3e38, 3e38, 1.0])  # finite, but its float32 sum overflows to inf
    b.grad = torch.ones(2, 2)
    assert first_non_finite_grad({"theta": [a], "phi": [b]}, {id(a): "a", id(b): "b"}) == ""
    b.grad[1, 0] = float("nan")
    assert "gradient of parameter b (shape (2, 2), group 'phi'; 1 of 4 non-finite: 1 NaN" in \
        first_non_finite_grad({"theta": [a], "phi": [b]}, {id(a): "a", id(b): "b"})


def test_all_finite_is_exact_for_every_dtype_and_leaves_values_as_they_were() -> None:
    from deepem.training.guards import all_finite

    big = torch.tensor([3e38, 3e38, -0.0])  # finite entries whose sum overflows: the one-call check is exact
    wide = torch.tensor([1.0, 2.0], dtype=torch.float64)
    before = [big.clone(), wide.clone()]
    assert all_finite([big, wide, torch.zeros(0)])
    for t, b in zip([big, wide], before, strict=True):
        assert torch.equal(t, b) and torch.equal(t.signbit(), b.signbit())
    for bad in (float("nan"), float("inf"), float("-inf")):
        wide[1] = bad
        assert not all_finite([big, wide])
        assert all_finite([big])  # the flag is cleared between checks
    assert all_finite([torch.arange(3)])  # integer tensors take the summing path
    assert not all_finite([torch.tensor([1.0, float("nan")]).to_sparse()])


def test_input_check_reads_observed_entries_only() -> None:
    from deepem.training.guards import non_finite_input

    x = torch.ones(3, 4)
    mask = torch.ones(3, 4, dtype=torch.bool)
    x[1, 2], mask[1, 2] = float("nan"), False
    assert non_finite_input(x, mask) == ""
    assert non_finite_input(x) == "input batch (1 of 12 non-finite: 1 NaN, 0 inf; rows [1] of the batch)"
    mask[1, 2] = True
    assert non_finite_input(x, mask) == "input batch (1 of 12 non-finite: 1 NaN, 0 inf; rows [] of the batch)"
    assert non_finite_input(torch.full((2, 2), 3e38)) == ""  # finite entries whose sum overflows
