"""One contract for every registered method, on every model family it accepts: it builds from its
defaults, binds, trains a few steps through the Trainer (finite losses, every parameter group moves),
survives a checkpoint round trip, and a run resumed from a mid-run checkpoint ends bitwise equal to the
uninterrupted one."""

from __future__ import annotations

import inspect

import pytest
import torch
from tests.training.training_helpers import assert_trees_equal, binary_data

from deepem.methods import METHODS, make_method
from deepem.models import ModelConfig, make_model
from deepem.training import TrainConfig, Trainer

#: small options so that every method runs in well under a second
FAST = {"particles": 3, "temperatures": 3, "leapfrog_steps": 2, "p_samples": 2, "baseline_hidden": 8}
FAMILIES = {"gaussian": ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli"),
            "bernoulli": ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli", latent="bernoulli"),
            "implicit": ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli", encoder="implicit", noise_dim=4),
            # two stochastic layers (3 + 2 latents) with tiny widths through the builder's options
            "2layer": ModelConfig(hidden=[8], likelihood="bernoulli", architecture="mlp-2layer",
                                  architecture_options={"layer_sizes": [3, 2], "between": [8]})}
SETTINGS = TrainConfig(dataset="binary-synthetic", epochs=2, batch_size=20, lr=3e-3, seed=11, valid_every=0,
                       checkpoint_every_steps=1, keep_checkpoints=10)


def cases():
    for name, cls in sorted(METHODS.items()):
        for family, config in FAMILIES.items():
            model = make_model(config, 16)
            if cls.requires <= model.capabilities():
                yield pytest.param(name, family, id=f"{name}-{family}")


def build(name: str, family: str, seed: int = 0):
    torch.manual_seed(seed)
    model = make_model(FAMILIES[family], 16)
    params = inspect.signature(METHODS[name].__init__).parameters
    options = {k: v for k, v in FAST.items() if k in params}
    if name in ("wake-sleep", "nvil"):
        options.pop("particles", None)  # their K = 1 is the algorithm
    return model, make_method(name, **options)


@pytest.mark.parametrize("name,family", list(cases()))
def test_method_contract(tmp_path, name, family):
    x = binary_data(n_train=40).train  # 2 steps an epoch
    model, method = build(name, family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, method, x, tmp_path / "run", SETTINGS, progress=False, log=lambda s: None)
    trainer.start()
    summary = trainer.fit()
    assert summary["steps"] == 4 and summary["skipped_steps"] == 0
    for group, params in trainer.step.groups.items():  # every group the method trains has parameters
        assert params, f"{name}: group {group} has no parameters"
    moved = [k for k in before if not torch.equal(before[k], model.state_dict()[k])]
    assert any(k.startswith("decoder") for k in moved) and any(k.startswith("encoder") for k in moved)
    train = [r for r in trainer.run.read_metrics() if r["kind"] == "train"]
    assert train and all(isinstance(v, float) and v == v for r in train for k, v in r.items()
                         if k.startswith("loss_"))

    # resume from the checkpoint after step 1 with fresh objects: bitwise where the run ended
    for path in sorted((tmp_path / "run" / "checkpoints").iterdir()):
        if int(path.stem.split("-")[-1]) > 1:
            path.unlink()
    model2, method2 = build(name, family, seed=123)  # other initial weights: the checkpoint replaces them
    again = Trainer(model2, method2, x, tmp_path / "run", SETTINGS, progress=False, log=lambda s: None)
    assert again.resume() and again.state.step == 1
    again.fit()
    assert_trees_equal(again.model.state_dict(), trainer.model.state_dict())
    assert_trees_equal(again.method.state_dict(), trainer.method.state_dict())
    assert_trees_equal({g: o.state_dict() for g, o in again.optimizers.items()},
                       {g: o.state_dict() for g, o in trainer.optimizers.items()})


def test_every_method_and_family_is_covered():
    covered = {c.values[0] for c in cases()}
    assert covered == set(METHODS)
    discrete = {c.values[0] for c in cases() if c.values[1] == "bernoulli"}
    assert discrete == {"nvil", "rws", "vimco", "wake-sleep"}
    implicit = {c.values[0] for c in cases() if c.values[1] == "implicit"}
    assert implicit == {"avb", "iwavb"}
    # q(z1|x) q(z2|z1) has an rsample and a density over continuous z: every method accepts it
    two_layer = {c.values[0] for c in cases() if c.values[1] == "2layer"}
    assert two_layer == set(METHODS)


@pytest.mark.parametrize("name,family", list(cases()))
def test_every_draw_comes_from_the_given_generator(name, family):
    """A generator passed to the method gives the numbers the global generator gives from the same seed,
    whatever state the global generator is in: every draw the method makes goes through it, in order."""
    x = binary_data(n_train=40).train[:8]
    mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) > 0.3
    model, method = build(name, family)
    method.bind(model)

    def losses(global_seed: int, own: bool, with_mask: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_seed)
        generator = torch.Generator().manual_seed(5) if own else None
        out = method(model, x, mask if with_mask else None, generator=generator)
        return {k: v.detach() for k, v in out.losses.items()}

    for with_mask in (False, True) if name.startswith("miss-") else (False,):
        expected = losses(5, own=False, with_mask=with_mask)
        for global_seed in (1, 2):
            assert_trees_equal(losses(global_seed, own=True, with_mask=with_mask), expected)
