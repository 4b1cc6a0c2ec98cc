"""The estimator registry, one contract over every registered estimator (the batched driver: seeded,
per point, sharded equal to one process, progress adding up to the points), the settings records
(defaults, one-line errors), the flags generated from them, and the validator of incomplete data."""

from __future__ import annotations

import argparse
import re

import pytest
import torch
from torch import Tensor

from deepem.declarations.flags import add_estimator_arguments as _add_estimator_arguments
from deepem.errors import UserError
from deepem.evaluation import (
    ESTIMATORS,
    AISSettings,
    EstimatorSettingError,
    IWSettings,
    ObservedIWSettings,
    estimate,
    iw_log_likelihood,
    make_estimator,
    observed_log_likelihood,
)
from deepem.evaluation.sharding import Shard
from deepem.models.linear_gaussian import linear_gaussian_model
from deepem.settings import typed_values
from deepem.workflows.assembly import iw_validator

#: small settings for each registered estimator
SMALL = {"iw": {"particles": 7, "chunk_particles": 3}, "iw-observed": {"particles": 7, "proposal": "completed"},
         "ais": {"chains": 3, "temperatures": 5, "leapfrog_steps": 2}}


@pytest.fixture(scope="module")
def lg():
    gen = torch.Generator().manual_seed(5)
    model = linear_gaussian_model(data_dim=5, latent_dim=2, noise_std=0.5, generator=gen)
    x = model.sample(11, gen, mean=False).detach()
    mask = torch.rand(11, 5, generator=gen) < 0.7
    return model, x, mask


def _identity(t: Tensor) -> Tensor:
    return t


def test_registry_names_and_settings_defaults():
    assert sorted(ESTIMATORS) == ["ais", "iw", "iw-observed"]
    assert set(SMALL) == set(ESTIMATORS)  # the contract below covers every estimator
    ais = AISSettings()
    assert (ais.chains, ais.temperatures, ais.leapfrog_steps, ais.initial, ais.schedule) == (16, 500, 10, "prior",
                                                                                               "sigmoid")
    assert IWSettings().particles == 5000
    with pytest.raises(EstimatorSettingError, match="unknown estimator 'hais'; choose one of iw, iw-observed, ais"):
        make_estimator("hais")
    assert make_estimator("ais", chains=None).settings.chains == 16  # None: the declared default


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_estimator_keeps_the_driver_contract(lg, name):
    model, x, mask = lg
    m = mask if name == "iw-observed" else None
    done: list[float] = []
    one = estimate(make_estimator(name, **SMALL[name]), model, x, m, batch_size=4, seed=3, progress=done.append)
    assert one.per_point.shape == (11,) and one.per_point.dtype == torch.float64
    assert torch.isfinite(one.per_point).all() and abs(sum(done) - 11) < 1e-9
    again = estimate(make_estimator(name, **SMALL[name]), model, x, m, batch_size=4, seed=3)
    assert torch.equal(one.per_point, again.per_point) and one.estimator == again.estimator
    other = estimate(make_estimator(name, **SMALL[name]), model, x, m, batch_size=4, seed=4)
    assert not torch.equal(one.per_point, other.per_point)
    ranks = [estimate(make_estimator(name, **SMALL[name]), model, x, m, batch_size=4, seed=3,
                      shard=Shard(r, 2, _identity)) for r in range(2)]
    assert torch.equal(torch.cat([r.per_point for r in ranks]), one.per_point)
    assert ranks[0].estimator == ranks[1].estimator == one.estimator


def test_the_wrappers_are_the_registered_estimators(lg):
    model, x, mask = lg
    iw = estimate(make_estimator("iw", particles=7, chunk_particles=3), model, x, seed=2)
    assert torch.equal(iw.per_point, iw_log_likelihood(model, x, 7, seed=2, chunk_particles=3).per_point)
    assert (iw.estimator, iw.settings) == ("IWAE bound, K=7", {"particles": 7, "seed": 2})
    obs = estimate(make_estimator("iw-observed", particles=9, proposal="completed"), model, x, mask, seed=1)
    assert torch.equal(obs.per_point, observed_log_likelihood(model, x, mask, 9, "completed", seed=1).per_point)
    assert obs.estimator == "IWAE bound of log p(x_o), K=9, q from completed input"
    with pytest.raises(EstimatorSettingError, match="iw-observed estimator needs the observed-data mask"):
        estimate(make_estimator("iw-observed"), model, x)
    with pytest.raises(EstimatorSettingError, match="use --estimator iw"):
        estimate(make_estimator("ais"), model, x, mask)


def test_setting_errors_are_one_line_user_errors():
    for name, settings, message in [
            ("iw", {"particles": 0}, "invalid iw setting particles = 0: must be an integer >= 1"),
            ("iw", {"chunk_particles": 0}, "invalid iw setting chunk_particles = 0: must be an integer >= 1"),
            ("iw-observed", {"proposal": "mean"},
             "invalid iw-observed setting proposal = 'mean': must be one of zero-filled, completed"),
            ("ais", {"leapfrog_steps": 0}, "invalid ais setting leapfrog_steps = 0: must be an integer >= 1"),
            ("ais", {"adaptation_rate": -1.0},
             "invalid ais setting adaptation_rate = -1.0: must be a positive finite number")]:
        with pytest.raises(EstimatorSettingError, match=re.escape(message)) as err:
            make_estimator(name, **settings)
        assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)


def test_flags_come_from_the_settings_records():
    """The estimators' flags are made by the run settings' generator (deepem.settings.add_arguments)."""
    parser = argparse.ArgumentParser()
    _add_estimator_arguments(parser, (IWSettings, ObservedIWSettings, AISSettings))
    args = parser.parse_args(["--chains", "4", "--ais-initial", "encoder", "--step-size", "0.1", "-k", "30"])
    assert typed_values(args, AISSettings) == {"chains": 4, "initial": "encoder", "step_size": 0.1}
    assert typed_values(args, IWSettings) == {"particles": 30}
    assert typed_values(parser.parse_args([]), AISSettings) == {}  # the record's defaults apply
    text = parser.format_help()
    assert "--temperatures" in text and "(default: 500)" in text and "--proposal" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--schedule", "cosine"])
    bdmc = argparse.ArgumentParser()
    _add_estimator_arguments(bdmc, (AISSettings,))
    assert "--particles" not in bdmc.format_help()


def test_incomplete_data_validate_with_the_observed_estimator(lg):
    model, x, mask = lg
    complete = iw_validator(x, 9, seed=4)(model)
    observed = iw_validator(x, 9, seed=4, mask=mask)(model)
    assert complete.estimator == "IWAE bound, K=9"
    assert observed.estimator == "IWAE bound of log p(x_o), K=9, q from zero-filled input"
    # q fed the zero-filled data: the same draws and values as the IW bound with a mask
    torch.testing.assert_close(observed.per_point, iw_log_likelihood(model, x, 9, seed=4, mask=mask).per_point)
    completed = iw_validator(x, 9, seed=4, mask=mask, proposal="completed")(model)
    assert "completed input" in completed.estimator


def test_the_cli_names_a_bad_setting_in_one_line(tmp_path, capsys):
    """A bad value fails before the run is loaded: exit status 2, one line naming the setting."""
    from deepem.cli import main

    for args, message in [(["--estimator", "ais", "--chains", "0"], "invalid chains = '0': must be an integer >= 1"),
                          (["-k", "0"], "invalid particles = '0': must be an integer >= 1")]:
        with pytest.raises(SystemExit) as exit_:  # argparse's error: the usage, then one line
            main(["evaluate", str(tmp_path / "no-run"), *args, "--quiet"])
        assert exit_.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
        assert len(errors) == 1 and message in errors[0]
