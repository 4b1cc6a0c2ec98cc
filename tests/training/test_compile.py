"""The `compile` setting (training/compiled.py): declared once, recorded in config.json, refused in one
line where inductor cannot build; a compiled step draws what the eager step draws and gives its losses
and parameters to float rounding. Compiling takes over a minute on a CPU, so that comparison runs only
with DEEPEM_COMPILE_TESTS=1 (benchmarks/gpu.py sets it on a GPU machine)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from training_helpers import binary_data, tiny_config

from deepem.declarations.run import RunSettings
from deepem.methods.registry import make_method
from deepem.models.config import ModelConfig, make_model
from deepem.settings import declared
from deepem.training import compiled as compiled_module
from deepem.training.compiled import CompileError, check_compilable
from deepem.training.step import TrainStep
from deepem.training.trainer import Trainer
from deepem.training.vectorisable import VectorisationError, check_vectorisable


def test_the_setting_is_declared_once_off_by_default_and_recorded(tmp_path):
    s = declared(RunSettings)["compile"]
    assert s.default is False and s.resume is True
    cfg = tiny_config(compile=True)
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))).compile is True


def test_without_a_cpp_compiler_compile_is_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(compiled_module.shutil, "which", lambda name: None)
    with pytest.raises(CompileError, match=r"^--compile needs a C\+\+ compiler on CPU .*without --compile$"):
        check_compilable("cpu")
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    with pytest.raises(CompileError):
        Trainer(model, make_method("iwae", particles=3), binary_data().train, tmp_path / "run",
                tiny_config(compile=True), progress=False, log=lambda s: None)
    assert not (tmp_path / "run").exists()
    with pytest.raises(CompileError, match="runs on cpu or cuda, not meta"):
        check_compilable("meta")


def test_vectorised_seeds_refuse_compile():
    with pytest.raises(VectorisationError, match="--compile"):
        check_vectorisable(tiny_config(compile=True))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DEEPEM_COMPILE_TESTS"),
                    reason="torch.compile takes over a minute on a CPU; set DEEPEM_COMPILE_TESTS=1")
def test_a_compiled_step_gives_the_eager_step_s_losses_and_parameters():
    x = binary_data().train[:20]
    steps = {}
    for compile in (False, True):
        torch.manual_seed(0)
        model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
        steps[compile] = TrainStep(model, make_method("iwae", particles=3), lr=1e-2, compile=compile)
    for seed in range(3):
        losses = {}
        for compile, step in steps.items():
            torch.manual_seed(seed)
            result = step(x).settled()
            assert not result.problem
            losses[compile] = result.output.losses["theta"].detach()
        torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-5)
    eager, compiled = (dict(steps[c].model.state_dict()) for c in (False, True))
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5)
