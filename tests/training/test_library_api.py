"""The Trainer from Python: a researcher's own model, method object and tensors, no registry and no CLI.
Run folders, config.json, checkpoints, metrics and exact resume work as for `deepem train`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn
from training_helpers import assert_trees_equal, binary_data

from deepem.methods.base import PHI, THETA, MethodOutput
from deepem.methods.iwae import IWAE
from deepem.models.config import ModelConfig, make_model
from deepem.models.lvm import DeepLatentModel
from deepem.training.config import ConfigError, TrainConfig
from deepem.training.trainer import Trainer

DISC = "discriminator"


class WithDiscriminator(IWAE):
    """IWAE plus a group the method owns, built in bind() from the model's sizes; its diagnostics are
    0-dim tensors (as methods will return them: no device sync per value per step)."""

    name = "iwae-with-disc"
    loss_groups = (THETA, PHI, DISC)

    def __init__(self, particles: int = 3) -> None:
        super().__init__(particles)
        self.bound_to: int | None = None

    def bind(self, model: DeepLatentModel) -> None:
        self.disc = nn.Linear(model.latent_dim, 1)
        self.bound_to = model.latent_dim

    def extra_parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {DISC: list(self.disc.parameters())}

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:
        out = super().forward(model, x, mask, generator=generator)
        z = torch.randn(x.shape[0], model.latent_dim, generator=generator)
        out.losses[DISC] = self.disc(z).pow(2).mean()
        out.diagnostics = {k: torch.tensor(v) for k, v in out.diagnostics.items()}
        out.diagnostics["disc_loss"] = out.losses[DISC].detach()
        return out


def make(seed: int = 0) -> tuple[DeepLatentModel, WithDiscriminator]:
    torch.manual_seed(seed)
    return make_model(ModelConfig(latent_dim=4, hidden=[16], likelihood="bernoulli"), 16), \
        WithDiscriminator()


SETTINGS = TrainConfig(epochs=2, batch_size=20, lr=3e-3, seed=5, checkpoint_every_steps=2, keep_checkpoints=10,
                       optim={DISC: {"steps": 3, "lr": 1e-2}})


def test_own_model_method_and_tensors_train_and_resume_exactly(tmp_path):
    x = binary_data().train
    model, method = make()
    validated = []

    def validate(m: nn.Module) -> SimpleNamespace:
        validated.append(m is model)
        return SimpleNamespace(mean=-1.5, stderr=0.25, estimator="my-bound")

    trainer = Trainer(model, method, x, tmp_path / "run", SETTINGS, validate=validate, progress=False,
                      log=lambda s: None)
    assert method.bound_to == 4  # bound before the optimisers were built: its group has one
    assert set(trainer.optimizers) == {THETA, PHI, DISC}
    trainer.start()
    summary = trainer.fit()
    assert summary["steps"] == 10 and validated == [True, True]
    # the group with steps=3 stepped three times per batch, the others once
    steps = {g: int(opt.state[opt.param_groups[0]["params"][0]]["step"]) for g, opt in trainer.optimizers.items()}
    assert steps == {THETA: 10, PHI: 10, DISC: 30}
    assert trainer.optimizers[DISC].param_groups[0]["lr"] == 1e-2
    assert trainer.optimizers[THETA].param_groups[0]["lr"] == 3e-3

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["method"] == "iwae-with-disc" and config["method_options"]["particles"] == 3
    # the settings in effect, and where each came from
    assert config["optim"][DISC] == {"steps": 3, "lr": 1e-2, "betas": [0.9, 0.999]}
    assert config["optim_sources"][DISC] == {"steps": "typed", "lr": "typed", "betas": "global default"}
    records = trainer.run.read_metrics()
    train = [r for r in records if r["kind"] == "train"]
    assert all(isinstance(r["disc_loss"], float) and isinstance(r["iw_bound"], float) for r in train)
    assert [r["estimator"] for r in records if r["kind"] == "valid"] == ["my-bound", "my-bound"]

    # resume from the step-6 checkpoint with fresh objects: ends bitwise where the run ended
    for later in ("ckpt-000000008.pt", "ckpt-000000010.pt"):
        (tmp_path / "run" / "checkpoints" / later).unlink()
    model2, method2 = make(seed=99)  # other initial weights: the checkpoint replaces them
    again = Trainer(model2, method2, x, tmp_path / "run", SETTINGS, validate=validate, progress=False,
                    log=lambda s: None)
    assert again.resume() and again.state.step == 6
    again.fit()
    assert_trees_equal(again.model.state_dict(), trainer.model.state_dict())
    assert_trees_equal(again.method.state_dict(), trainer.method.state_dict())
    def timeless(rs: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "points_per_sec"} for r in rs]

    assert timeless(again.run.read_metrics()) == timeless(records)


def test_optim_names_are_checked_against_the_bound_method(tmp_path):
    model, method = make()
    bad = TrainConfig(optim={"critic": {"lr": 1e-3}})
    with pytest.raises(ConfigError, match="unknown parameter group 'critic'; this method's groups are theta, "
                                          "phi, discriminator"):
        Trainer(model, method, binary_data().train, tmp_path / "run", bad, progress=False)
    assert not (tmp_path / "run").exists()
