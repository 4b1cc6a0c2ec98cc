"""The conv architecture (gated CNN of Tomczak & Welling 2017): documented shapes with particles first,
refusal of data that are not 28x28, and a few Trainer steps that lower the loss and resume bitwise."""

from __future__ import annotations

import inspect

import pytest
import torch
from tests.methods.test_contract import FAST
from tests.training.training_helpers import assert_trees_equal

from deepem.evaluation.loglik import iw_log_likelihood
from deepem.methods import METHODS, make_method
from deepem.models import ModelConfig, make_model
from deepem.models.conv import ConvDecoder, ConvEncoder
from deepem.training import TrainConfig, Trainer

#: narrow channels so that a test step takes milliseconds; the layer structure is the preset's
NARROW = {"encoder_layers": [[4, 7, 1, 3], [4, 3, 2, 1], [8, 5, 1, 2], [8, 3, 2, 1], [2, 3, 1, 1]],
          "channels": 8, "depth": 2}


def conv_config(**changes) -> ModelConfig:
    return ModelConfig(architecture="conv", likelihood="bernoulli", **changes)


def images(n: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 784), 0.3), generator=torch.Generator().manual_seed(seed))


def test_preset_shapes_with_particles_first():
    torch.manual_seed(0)
    model = make_model(conv_config(), 784)
    assert isinstance(model.encoder, ConvEncoder) and isinstance(model.decoder, ConvDecoder)
    assert model.decoder.widest_activation == 64 * 784  # sizes the IW evaluator's particle chunks
    assert model.latent_dim == 50 and model.latent_layers == (50,)
    x = images(3)
    mean, std = model.encoder(x)
    assert mean.shape == std.shape == (3, 50)
    assert float(std.detach().min()) >= torch.exp(torch.tensor(-3.0)) - 1e-6  # log variance >= -6
    conv_out = model.encoder.convs(x.reshape(3, 1, 28, 28))
    assert conv_out.shape == (3, 6, 7, 7)  # 294 features, as in Tomczak & Welling
    z = model.encode(x).rsample(2)
    assert z.shape == (2, 3, 50) and model.decoder(z).shape == (2, 3, 784)
    assert model.log_joint(x, z).shape == (2, 3)
    # one batched call equals per-particle calls: leading dimensions are only flattened
    torch.testing.assert_close(model.decoder(z)[1], model.decoder(z[1]))
    # a Gaussian likelihood with a per-pixel std needs two 28x28 maps
    gauss = make_model(ModelConfig(architecture="conv", likelihood="gaussian"), 784)
    assert gauss.decoder(z).shape == (2, 3, 2 * 784)


def test_refuses_data_that_are_not_28x28():
    with pytest.raises(ValueError, match="28x28 images flattened to 784 values; this data has 16 dimensions"):
        make_model(conv_config(), 16)
    model = make_model(conv_config(architecture_options=NARROW), 784)
    with pytest.raises(ValueError, match="28x28 images flattened to 784 values, got data shaped \\(3, 100\\)"):
        model.encoder(torch.zeros(3, 100))
    with pytest.raises(ValueError, match="hidden .* does not apply to architecture 'conv'"):
        conv_config(hidden=[100]).validate()


def test_data_mean_starts_the_output_bias():
    x = images(40)
    model = make_model(conv_config(architecture_options=NARROW), 784, x.mean(0))
    assert model.decoder.output_bias.abs().sum() > 0


SETTINGS = TrainConfig(dataset="binary-28x28", epochs=4, batch_size=20, lr=1e-2, seed=3, valid_every=0,
                       checkpoint_every_steps=2, keep_checkpoints=10)


def build(seed: int):
    torch.manual_seed(seed)
    return make_model(conv_config(latent_dim=4, architecture_options=NARROW), 784), \
        make_method("iwae", particles=2)


def test_trainer_steps_lower_the_loss_and_resume_bitwise(tmp_path):
    x = images(40)  # 2 steps an epoch
    model, method = build(0)
    before = float(iw_log_likelihood(model, x, particles=5, seed=0).mean)
    trainer = Trainer(model, method, x, tmp_path / "run", SETTINGS, progress=False, log=lambda s: None)
    trainer.start()
    assert trainer.fit()["steps"] == 8
    after = float(iw_log_likelihood(model, x, particles=5, seed=0).mean)
    assert after > before + 50  # measured: -570.9 -> -477.4 nats (IW-5 bound on the 40 images)

    for path in sorted((tmp_path / "run" / "checkpoints").iterdir()):
        if int(path.stem.split("-")[-1]) > 4:
            path.unlink()
    model2, method2 = build(99)  # other initial weights: the checkpoint replaces them
    again = Trainer(model2, method2, x, tmp_path / "run", SETTINGS, progress=False, log=lambda s: None)
    assert again.resume() and again.state.step == 4
    again.fit()
    assert_trees_equal(again.model.state_dict(), trainer.model.state_dict())
    assert_trees_equal({g: o.state_dict() for g, o in again.optimizers.items()},
                       {g: o.state_dict() for g, o in trainer.optimizers.items()})


def test_every_method_that_accepts_a_diagonal_gaussian_q_runs_a_step():
    """The conv encoder's q is one diagonal Gaussian: every method for continuous latents accepts it,
    IWEM's widened proposal included; each gives finite losses on a batch of 28x28 images."""
    torch.manual_seed(0)
    model = make_model(conv_config(latent_dim=3, architecture_options=NARROW), 784)
    x = images(4)
    accepted = []
    for name, cls in sorted(METHODS.items()):
        if not cls.requires <= model.capabilities():
            continue
        params = inspect.signature(cls.__init__).parameters
        method = make_method(name, **{k: v for k, v in FAST.items() if k in params and
                                      not (name in ("wake-sleep", "nvil") and k == "particles")})
        method.bind(model)
        out = method(model, x)
        assert all(torch.isfinite(loss) for loss in out.losses.values()), name
        accepted.append(name)
    assert set(accepted) == set(METHODS)
    make_method("iwem", particles=2, proposal_std_scale=1.5).bind(model)
