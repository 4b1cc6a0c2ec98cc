"""Per-group optimisation: learning rate, Adam betas and steps per batch of θ, φ and a method's own
groups; defaults that reproduce one Adam setting for all groups; errors that name group, key and values."""

from __future__ import annotations

import math

import pytest
import torch
from training_helpers import binary_data, tiny_config

from deepem.cli import build_parser
from deepem.methods.base import PHI, THETA
from deepem.methods.iwae import IWAE
from deepem.models.config import ModelConfig, make_model
from deepem.models.lvm import DeepLatentModel
from deepem.training.config import ConfigError
from deepem.training.optim import GroupOptim
from deepem.training.schedules import learning_rate_factor
from deepem.training.step import TrainStep
from deepem.workflows.assembly import build_trainer, resolve
from deepem.workflows.commands import typed_settings


def settings_of(trainer) -> dict[str, tuple]:
    return {g: (pg["lr"], pg["betas"], pg["eps"]) for g, opt in trainer.optimizers.items()
            for pg in opt.param_groups}


def test_defaults_are_one_adam_setting_for_every_group(tmp_path):
    trainer = build_trainer(tiny_config(), tmp_path / "run", data=binary_data(), progress=False)
    assert settings_of(trainer) == {THETA: (3e-3, (0.9, 0.999), 1e-4), PHI: (3e-3, (0.9, 0.999), 1e-4)}
    assert {g: s.steps for g, s in trainer.step.settings.items()} == {THETA: 1, PHI: 1}


def test_group_settings_are_applied_and_scaled_by_schedule_and_rollback(tmp_path):
    config = tiny_config(schedule="burda", optim={PHI: {"lr": 1e-4, "betas": [0.5, 0.99]}})
    trainer = build_trainer(config, tmp_path / "run", data=binary_data(), progress=False)
    assert settings_of(trainer)[PHI] == (1e-4, (0.5, 0.99), 1e-4)
    assert settings_of(trainer)[THETA] == (3e-3, (0.9, 0.999), 1e-4)
    trainer.state.lr_scale = 0.5
    trainer.set_learning_rates(epoch=1)  # burda: epoch 1 is in the second stage
    factor = learning_rate_factor("burda", 1) * 0.5
    assert factor < 0.5
    assert math.isclose(trainer.optimizers[PHI].param_groups[0]["lr"], 1e-4 * factor)
    assert math.isclose(trainer.optimizers[THETA].param_groups[0]["lr"], 3e-3 * factor)


def _stepped(phi_steps: int) -> tuple[DeepLatentModel, TrainStep]:
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli"), 16)
    step = TrainStep(model, IWAE(particles=2), {THETA: GroupOptim(lr=1e-2), PHI: GroupOptim(lr=1e-2, steps=phi_steps)})
    step(binary_data().train[:10])
    return model, step


def test_a_group_with_two_steps_per_batch_moves_twice_and_alone():
    model1, step1 = _stepped(1)
    model2, step2 = _stepped(2)

    def adam_steps(step: TrainStep, group: str) -> int:
        opt = step.optimizers[group]
        return int(opt.state[opt.param_groups[0]["params"][0]]["step"])

    assert (adam_steps(step2, THETA), adam_steps(step2, PHI)) == (1, 2)
    assert (adam_steps(step1, THETA), adam_steps(step1, PHI)) == (1, 1)
    # θ took the same single step in both; φ's second step moved it further
    for a, b in zip(model1.generative_parameters(), model2.generative_parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(model1.encoder_parameters(), model2.encoder_parameters(),
                                                       strict=True))


BAD_OPTIM = [
    ({"discriminator": {"lr": 1e-3}}, "unknown parameter group 'discriminator'; this method's groups are theta, phi"),
    ({PHI: {"momentum": 0.9}}, "group 'phi': unknown key momentum; allowed keys: lr, betas, steps"),
    ({PHI: {"lr": 0}}, "phi.lr = 0: must be a positive finite number"),
    ({PHI: {"betas": [0.9, 1.0]}}, "phi.betas = [0.9, 1.0]: must be two numbers in [0, 1)"),
    ({THETA: {"steps": 0}}, "theta.steps = 0: must be an integer >= 1"),
    ({THETA: 3}, "group 'theta': must be a dictionary with keys among lr, betas, steps"),
]


@pytest.mark.parametrize("optim, message", BAD_OPTIM, ids=[m.split(":")[0] for _, m in BAD_OPTIM])
def test_optim_errors_name_group_key_and_allowed_values(optim, message):
    with pytest.raises(ConfigError) as info:
        resolve(tiny_config(optim=optim))
    assert "invalid optim = " in str(info.value) and message in str(info.value)


def test_cli_optim_option_builds_the_config_field():
    args = build_parser().parse_args(["train", "--optim", "phi:lr=3e-4", "--optim", "phi:betas=0.9,0.99",
                                      "--optim", "theta:steps=2"])
    assert typed_settings(args)["optim"] == {PHI: {"lr": 3e-4, "betas": [0.9, 0.99]}, THETA: {"steps": 2}}


@pytest.mark.parametrize("text, message", [("phi-lr=1", "is not GROUP:KEY=VALUE"),
                                           ("phi:rate=1", "unknown key 'rate'; allowed keys: lr, betas, steps"),
                                           ("phi:steps=two", "steps takes a whole number")])
def test_cli_optim_option_errors(capsys, text, message):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--optim", text])
    assert message in capsys.readouterr().err


def test_a_methods_paper_settings_apply_under_the_users(tmp_path):
    from deepem.methods import make_method
    from deepem.models import ModelConfig, make_model
    from deepem.training import TrainConfig, Trainer

    model = make_model(ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli"), 16)
    settings = TrainConfig(dataset="t", epochs=1, optim={"phi": {"lr": 1e-3}, "discriminator": {"steps": 2}})
    trainer = Trainer(model, make_method("iwavb", particles=2), binary_data().train, tmp_path / "r", settings,
                      progress=False, log=lambda s: None)
    lrs = {g: o.param_groups[0]["lr"] for g, o in trainer.optimizers.items()}
    assert lrs == {"theta": 5e-5, "phi": 1e-3, "discriminator": 1e-4}  # AVB paper, except the user's φ rate
    assert trainer.config.optim["discriminator"] == {"lr": 1e-4, "steps": 2, "betas": [0.9, 0.999]}
    assert trainer.config.optim_sources["discriminator"] == {"lr": "method default", "steps": "typed",
                                                             "betas": "global default"}


def test_fused_adam_is_the_per_parameter_update():
    """The optimisers are fused where the device allows; the update is the loop's to rounding."""
    import torch

    from deepem.training.optim import GroupOptim, make_optimizers

    g = torch.Generator().manual_seed(0)
    fused_params = [torch.nn.Parameter(torch.randn(7, 3, generator=g)), torch.nn.Parameter(torch.randn(5, generator=g))]
    loop_params = [torch.nn.Parameter(p.detach().clone()) for p in fused_params]
    fused = make_optimizers({"theta": fused_params}, {"theta": GroupOptim(lr=1e-2, betas=(0.8, 0.99))})["theta"]
    loop = torch.optim.Adam(loop_params, lr=1e-2, betas=(0.8, 0.99), eps=1e-4, foreach=False)
    assert fused.param_groups[0]["fused"]
    for _ in range(50):
        for a, b in zip(fused_params, loop_params, strict=True):
            grad = torch.randn(a.shape, generator=g)
            a.grad, b.grad = grad.clone(), grad.clone()
        fused.step()
        loop.step()
    for a, b in zip(fused_params, loop_params, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)  # 50 steps of size ~1e-2: rounding only
