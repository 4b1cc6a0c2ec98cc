"""The precision setting (training/precision.py): declared, recorded and kept on resume; a bf16-mixed step
runs through the fused Bernoulli head with float32 log-weights, and its log-weights and gradients stay
close to float32's with the same parameters and draws; refusals are one line. (float32 itself is held
bitwise by the golden record, tests/methods/golden.)"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from tests.methods.test_contract import build as contract_build
from tests.methods.test_contract import cases as contract_cases
from training_helpers import assert_trees_equal, binary_data, tiny_config

from deepem.declarations.run import RunSettings
from deepem.errors import UserError
from deepem.inference.fast_tanh import FAST_TANH_MIN_NUMEL, fast_tanh
from deepem.methods.base import PHI, THETA, MethodOutput, device_generator
from deepem.methods.iwae import IWAE
from deepem.methods.registry import make_method
from deepem.models import bernoulli_head
from deepem.models.config import ModelConfig, make_model
from deepem.models.networks import NetworkPrecision, network_region, networks_in
from deepem.settings import declared
from deepem.training import precision as precision_module
from deepem.training.config import ConfigError
from deepem.training.precision import PrecisionError, check_precision, mixed_precision
from deepem.training.step import TrainStep, backward_losses
from deepem.training.trainer import Trainer

needs_bf16 = pytest.mark.skipif(not precision_module.cpu_has_bf16(), reason="this CPU has no native bfloat16")

D = 784  # MNIST's size: K·B·D above the fused head's threshold at K = 50, B = 4


def mnist_sized_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return make_model(ModelConfig(latent_dim=8, hidden=[64, 64], likelihood="bernoulli"), D)


def batch(b: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.bernoulli(torch.full((b, D), 0.3), generator=torch.Generator().manual_seed(seed))


def log_w_and_grads(model, method_name: str, x: torch.Tensor, precision: str) -> tuple[torch.Tensor, dict]:
    """The method's log-weights and each group's flat gradient with the draws of one seed."""
    model = copy.deepcopy(model)
    method = make_method(method_name, particles=50)
    step = TrainStep(model, method, precision=precision)
    torch.manual_seed(7)
    with mixed_precision(step.precision):
        out = method(model, x, generator=device_generator(x.device))
    backward_losses(out.losses, step.groups)
    grads = {g: torch.cat([p.grad.flatten() for p in step.groups[g]]) for g in (THETA, PHI)}
    return out.log_w.detach(), grads


def test_the_setting_is_declared_once_with_its_choices_and_is_not_resumable():
    s = declared(RunSettings)["precision"]
    assert s.default == "32" and s.resume is False
    assert s.choices == ("32", "bf16-mixed", "bf16-mixed-head32", "16-mixed")


def test_config_json_records_the_precision_and_a_resumed_run_may_not_change_it(tmp_path):
    cfg = tiny_config(precision="bf16-mixed")
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))).precision == "bf16-mixed"
    with pytest.raises(ConfigError, match="cannot change precision when resuming"):
        cfg.with_overrides({"precision": "32"})
    assert cfg.with_overrides({"epochs": 3}).precision == "bf16-mixed"


def _trainer(run_dir, epochs: int) -> Trainer:
    data = binary_data()
    torch.manual_seed(5)
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    return Trainer(model, make_method("iwae", particles=3), data.train, run_dir,
                   tiny_config(precision="bf16-mixed", epochs=epochs, valid_every=0), progress=False,
                   log=lambda s: None)


@needs_bf16
def test_a_bf16_mixed_run_records_its_precision_and_resumes_bitwise(tmp_path):
    whole = _trainer(tmp_path / "whole", epochs=2)
    whole.start()
    whole.fit()
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["precision"] == "bf16-mixed"
    first = _trainer(tmp_path / "parts", epochs=1)
    first.start()
    first.fit()
    resumed = _trainer(tmp_path / "parts", epochs=2)
    assert resumed.resume()
    resumed.fit()
    assert_trees_equal(dict(whole.model.state_dict()), dict(resumed.model.state_dict()))
    assert_trees_equal({g: o.state_dict() for g, o in whole.optimizers.items()},
                       {g: o.state_dict() for g, o in resumed.optimizers.items()})


@needs_bf16
def test_a_bf16_mixed_step_runs_through_the_fused_head_with_float32_log_weights(monkeypatch):
    calls = []
    original = bernoulli_head._BernoulliLinear.apply

    def counting(h, weight, bias, signs):
        calls.append((h.dtype, weight.dtype))
        return original(h, weight, bias, signs)

    monkeypatch.setattr(bernoulli_head._BernoulliLinear, "apply", counting)
    model = mnist_sized_model()
    step = TrainStep(model, make_method("iwae", particles=50), precision="bf16-mixed")
    result = step(batch())
    assert not result.problem
    assert calls and all(c == (torch.bfloat16, torch.bfloat16) for c in calls)  # the product in bfloat16
    assert result.output.log_w.dtype == torch.float32
    assert all(loss.dtype == torch.float32 for loss in result.output.losses.values())
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
               for p in model.parameters())
    assert all(s["exp_avg"].dtype == torch.float32 for o in step.optimizers.values() for s in o.state.values())


@needs_bf16
@pytest.mark.parametrize("method", ["iwae", "rem-v1"])
@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-mixed-head32"])
def test_mixed_log_weights_stay_within_a_tenth_of_a_nat_of_float32(method, precision):
    """Same parameters, same draws: measured 0.01-0.02 nat mean, 0.1 max at this size (|log w| ≈ 550)."""
    model, x = mnist_sized_model(), batch()
    ref, _ = log_w_and_grads(model, method, x, "32")
    mixed, _ = log_w_and_grads(model, method, x, precision)
    error = (mixed - ref).abs()
    assert mixed.dtype == torch.float32
    assert float(error.mean()) < 0.1 and float(error.max()) < 0.5
    assert float(error.max()) > 0  # the products did run in bfloat16


@needs_bf16
@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-mixed-head32"])
def test_the_mixed_gradient_points_where_float32s_does(precision):
    model, x = mnist_sized_model(), batch()
    _, ref = log_w_and_grads(model, "iwae", x, "32")
    _, mixed = log_w_and_grads(model, "iwae", x, precision)
    for group in (THETA, PHI):
        cos = torch.nn.functional.cosine_similarity(mixed[group].double(), ref[group].double(), dim=0)
        assert cos > 0.999, group


@needs_bf16
def test_float32_heads_run_the_output_layer_in_float32_and_the_body_in_bfloat16():
    model, x = mnist_sized_model(), batch()
    net = model.encoder.net
    with networks_in(NetworkPrecision(torch.bfloat16, float32_heads=True)):
        out = net(x)
        with network_region(x):
            body = net.body(x)
    assert body.dtype == torch.bfloat16 and out.dtype == torch.float32
    assert torch.equal(out, torch.nn.functional.linear(body.float(), net.head.weight, net.head.bias))
    with networks_in(NetworkPrecision(torch.bfloat16)):
        plain = net(x)
    assert plain.dtype == torch.float32 and not torch.equal(plain, out)  # float32 out, from a bfloat16 head


@needs_bf16
def test_fast_tanh_under_bfloat16_matches_tanh_and_its_gradient():
    x = torch.randn(FAST_TANH_MIN_NUMEL * 2, generator=torch.Generator().manual_seed(0)).bfloat16()
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast, plain = fast_tanh(a), torch.tanh(b)
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast, plain, atol=2 ** -7, rtol=0)
    fast.sum().backward()
    plain.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=2 ** -6, rtol=0)


def test_16_mixed_on_cpu_is_refused_in_one_line():
    with pytest.raises(PrecisionError, match="CUDA only") as err:
        check_precision("16-mixed", "cpu")
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_bf16_on_a_cpu_without_bfloat16_is_refused_naming_what_works(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(PrecisionError, match="no native bfloat16.*--precision 32"):
        check_precision("bf16-mixed", "cpu")


def test_mixed_precision_with_float64_parameters_is_refused_before_anything_is_written(tmp_path):
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    with pytest.raises(PrecisionError, match="float32 parameters"):
        Trainer(model, make_method("iwae", particles=3), binary_data().train.double(), tmp_path / "run",
                tiny_config(precision="bf16-mixed", dtype="float64"), progress=False, log=lambda s: None)
    assert not (tmp_path / "run").exists()


class SteepIWAE(IWAE):
    """IWAE with its losses times 1e4: gradients large enough for a big loss scale to overflow float32."""

    def forward(self, *args, **kwargs) -> MethodOutput:
        out = super().forward(*args, **kwargs)
        out.losses = {g: loss * 1e4 for g, loss in out.losses.items()}
        return out


def _scaled_step(init_scale: float, method: IWAE | None = None) -> tuple[TrainStep, torch.nn.Module]:
    """A float32 step with a loss scaler (as `16-mixed` builds on CUDA; here on CPU, to test the scaling)."""
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    step = TrainStep(model, method or make_method("iwae", particles=3), lr=1e-2)
    step.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return step, model


def test_loss_scaling_by_a_power_of_two_gives_the_unscaled_step_bitwise():
    x = binary_data().train[:20]
    torch.manual_seed(0)
    plain_model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    plain = TrainStep(plain_model, make_method("iwae", particles=3), lr=1e-2)
    torch.manual_seed(0)
    scaled, scaled_model = _scaled_step(2.0 ** 16)
    for seed in range(3):
        torch.manual_seed(seed)
        assert not plain(x).problem
        torch.manual_seed(seed)
        result = scaled(x)
        assert not result.problem and not result.skipped
    assert_trees_equal(dict(plain_model.state_dict()), dict(scaled_model.state_dict()))


def test_an_overflowing_loss_scale_skips_the_step_and_is_lowered_not_reported():
    torch.manual_seed(0)
    step, model = _scaled_step(2.0 ** 127, SteepIWAE(particles=3))  # the scaled gradients overflow float32
    before = copy.deepcopy(model.state_dict())
    result = step(binary_data().train[:20])
    assert result.skipped and not result.problem
    assert_trees_equal(dict(before), dict(model.state_dict()))
    assert step.scaler.get_scale() < 2.0 ** 127
    assert all(not o.state for o in step.optimizers.values())  # no Adam step was taken


def _scaled_trainer(run_dir, epochs: int) -> Trainer:
    """A float32 run whose step scales its losses (as `16-mixed` does on CUDA; a CPU scaler here) with a
    scale that doubles every step, so the scale at a checkpoint differs from the initial one."""
    data = binary_data()
    torch.manual_seed(5)
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    trainer = Trainer(model, make_method("iwae", particles=3), data.train, run_dir,
                      tiny_config(epochs=epochs, valid_every=0), progress=False, log=lambda s: None)
    trainer.step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0, growth_interval=1)
    return trainer


def test_the_loss_scale_is_checkpointed_and_a_resumed_run_goes_on_with_it(tmp_path):
    whole = _scaled_trainer(tmp_path / "whole", epochs=2)
    whole.start()
    whole.fit()
    first = _scaled_trainer(tmp_path / "parts", epochs=1)
    first.start()
    first.fit()
    assert first.step.scaler.get_scale() == 2.0 * 2 ** 5  # five steps, each doubling it
    resumed = _scaled_trainer(tmp_path / "parts", epochs=2)
    assert resumed.resume()
    assert resumed.step.scaler.get_scale() == 2.0 * 2 ** 5
    resumed.fit()
    assert resumed.step.scaler.state_dict() == whole.step.scaler.state_dict()
    assert_trees_equal(dict(whole.model.state_dict()), dict(resumed.model.state_dict()))


@needs_bf16
@pytest.mark.parametrize("name,family", list(contract_cases()))
def test_every_method_steps_under_bf16_mixed_with_float32_losses_and_log_weights(name, family):
    model, method = contract_build(name, family)
    method.bind(model)  # as the Trainer does: a method may build networks here
    step = TrainStep(model, method, lr=3e-3, precision="bf16-mixed")
    result = step(binary_data(n_train=40).train[:20])
    assert not result.problem
    assert all(loss.dtype == torch.float32 for loss in result.output.losses.values())
    assert result.output.log_w is None or result.output.log_w.dtype == torch.float32


class AutocastProbe(IWAE):
    """Records whether autocast is on in the method's own code (it must not be: only the networks use it)."""

    def forward(self, *args, **kwargs) -> MethodOutput:
        self.seen = torch.is_autocast_enabled("cpu")
        return super().forward(*args, **kwargs)


@needs_bf16
def test_only_the_networks_compute_in_bfloat16_the_method_s_own_code_does_not():
    """REM's moment matching and s(z) draws, log-densities and logsumexp run where autocast is off."""
    model, method = mnist_sized_model(), AutocastProbe(particles=50)
    inside = []
    model.decoder[0].register_forward_hook(lambda m, i, o: inside.append(o.dtype))
    TrainStep(model, method, precision="bf16-mixed")(batch())
    assert method.seen is False and inside == [torch.bfloat16]
