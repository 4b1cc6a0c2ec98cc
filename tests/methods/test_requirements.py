"""Every registered method states what it requires of a model, and binding checks it."""

from __future__ import annotations

import pytest

from deepem.methods import METHODS, make_method
from deepem.methods.base import Method, compatible_methods
from deepem.models import DeepLatentModel, ModelConfig, make_model


def model_of(**changes) -> DeepLatentModel:
    return make_model(ModelConfig(latent_dim=3, hidden=[4], likelihood="bernoulli", **changes), 5)


def subclasses(cls: type) -> set[type]:
    return {c for sub in cls.__subclasses__() for c in {sub} | subclasses(sub)}


def test_every_named_method_of_the_library_is_registered_once_under_its_name():
    """A method file without its registry line (registry.py) fails here."""
    named = {c for c in subclasses(Method) if c.name and c.__module__.startswith("deepem.methods.")}
    assert set(METHODS.values()) == named
    assert all(name == cls.name for name, cls in METHODS.items())


def test_compatible_methods_by_model_family():
    assert compatible_methods(model_of()) == sorted(METHODS)
    assert compatible_methods(model_of(latent="bernoulli")) == ["nvil", "rws", "vimco", "wake-sleep"]
    assert compatible_methods(model_of(encoder="implicit")) == ["avb", "iwavb"]


def test_the_refusal_names_what_is_missing_and_what_works():
    expected = (r"method 'iwae' needs a reparameterisable q\(z\|x\).*BernoulliEncoder, binary latents.*"
                r"methods that work with this model: nvil, rws, vimco, wake-sleep")
    with pytest.raises(ValueError, match=expected):
        make_method("iwae").bind(model_of(latent="bernoulli"))
    with pytest.raises(ValueError, match="density log q.*methods that work with this model: avb, iwavb"):
        make_method("vae").bind(model_of(encoder="implicit"))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_binds_to_the_standard_model(name):
    make_method(name).bind(model_of())
