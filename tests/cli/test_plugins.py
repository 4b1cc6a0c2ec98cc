"""A method and an estimator of one's own, registered outside the package as the docs say (a module on
PYTHONPATH named in DEEPEM_PLUGINS), work through every command: train, evaluate, compare and its table.
The K typed is the K used, and every record names the new estimator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import deepem
from deepem.plugins import PluginError, load_plugins, plugin_names
from deepem.report.compare import run_row

SRC = Path(deepem.__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--latent-dim", "2", "--hidden", "8", "--batch-size", "50", "--quiet",
        "--valid-particles", "5", "--train-limit", "100", "--epochs", "1", "--threads", "1"]

PLUGIN = '''
"""A lab's own method and estimator."""
from dataclasses import dataclass

import torch

from deepem.evaluation import register_estimator
from deepem.evaluation.driver import Estimator
from deepem.evaluation.loglik import require_q_density
from deepem.inference.capabilities import Q_DENSITY, RSAMPLE
from deepem.inference.numerics import log_mean_exp
from deepem.methods import PHI, THETA, Method, MethodOutput, draw, register_method


@register_method
class IWForThetaELBOForPhi(Method):
    name = "iw-theta-elbo-phi"
    requires = frozenset({RSAMPLE, Q_DENSITY})

    def forward(self, model, x, mask=None, *, generator=None) -> MethodOutput:
        draws = draw(model, x, self.particles, mask=mask, generator=generator)
        return MethodOutput({THETA: -log_mean_exp(draws.log_w).mean(), PHI: -draws.log_w.mean()}, {},
                            draws.log_w)


@dataclass(frozen=True)
class MeanELBOSettings:
    estimator = "mean-elbo"
    particles: int = 3


@register_estimator
class MeanELBO(Estimator):
    """The ELBO averaged over K draws: a lower bound of log p(x) that does not tighten with K."""

    name = "mean-elbo"
    Settings = MeanELBOSettings

    def check(self, model, data, mask):
        require_q_density(model)

    @torch.no_grad()
    def batch(self, model, x, mask, generator, replay, progress):
        q = model.encode(x, mask)
        z = q.sample(self.settings.particles, generator)
        if replay:
            return None
        return {"log_likelihood": (model.log_joint(x, z, mask) - q.log_prob(z)).mean(0),
                "draws": torch.full((x.shape[0],), float(z.shape[0]))}

    columns = ("log_likelihood", "draws")

    def label(self):
        return f"mean ELBO, K={self.settings.particles}"

    def record(self, columns, seed, batch_size):
        # what was drawn, not what was asked: the test compares it with the K typed
        return {**vars(self.settings), "seed": seed, "draws_per_point": sorted(set(columns["draws"].tolist()))}
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "lab_plugin.py").write_text(textwrap.dedent(PLUGIN))
    data = os.environ.get("DEEPEM_DATA", str(SRC.parents[2] / "shared" / "data"))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(SRC)]), DEEPEM_PLUGINS="lab_plugin",
                DEEPEM_DATA=data, OMP_NUM_THREADS="1")


def deepem_cli(env, cwd, *args):
    done = subprocess.run([sys.executable, "-m", "deepem", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_a_plugged_in_method_and_estimator_through_train_evaluate_and_compare(plugin_env, tmp_path):
    run = tmp_path / "own"
    deepem_cli(plugin_env, tmp_path, "train", "-m", "iw-theta-elbo-phi", "-k", "2", "--out", str(run), *TINY)
    assert json.loads((run / "config.json").read_text())["method"] == "iw-theta-elbo-phi"

    out = deepem_cli(plugin_env, tmp_path, "evaluate", str(run), "--estimator", "mean-elbo", "-k", "10",
                     "--limit", "20", "--quiet")
    record = json.loads((run / "evaluation.json").read_text())
    assert record["estimator_name"] == "mean-elbo" and record["estimator"] == "mean ELBO, K=10"
    assert record["particles"] == 10 and record["draws_per_point"] == [10.0]  # the K typed is the K drawn
    assert record["file"].startswith("evaluations/mean-elbo-k10-test-n20-s0-step")
    assert (run / record["file"]).is_file() and "mean ELBO, K=10" in out
    assert not list((run / "evaluations").glob("iw-*"))

    cmp = tmp_path / "cmp"
    table = deepem_cli(plugin_env, tmp_path, "compare", "--methods", "iw-theta-elbo-phi,vae", "-k", "2",
                       "--eval-estimator", "mean-elbo", "--eval-particles", "4", "--eval-limit", "20",
                       "--out", str(cmp), *TINY)
    assert "mean ELBO, K=4" in table and "mean ELBO, K=4" in (cmp / "results.md").read_text()
    rows = json.loads((cmp / "results.json").read_text())
    assert [r["method"] for r in rows] == ["iw-theta-elbo-phi", "vae"]
    for method_run in (p for p in cmp.iterdir() if (p / "evaluations").is_dir()):
        records = [json.loads(p.read_text()) for p in (method_run / "evaluations").glob("*.json")]
        assert len(records) == 2  # test and train
        assert all(r["estimator_name"] == "mean-elbo" and r["draws_per_point"] == [4.0] for r in records)
        assert all(p.name.startswith("mean-elbo-k4-") for p in (method_run / "evaluations").glob("*.json"))
        # a table row read back from the folder alone finds the same records by their contents
        assert run_row(method_run, method_run.name)["estimator"] == "mean ELBO, K=4"


def test_plugins_are_named_by_the_environment_and_a_missing_one_is_one_line(tmp_path):
    assert plugin_names({"DEEPEM_PLUGINS": " a, b.c ,,"}) == ["a", "b.c"]
    assert load_plugins({}) == []
    with pytest.raises(PluginError, match="no_such_plugin_module"):
        load_plugins({"DEEPEM_PLUGINS": "no_such_plugin_module"})
    env = dict(os.environ, PYTHONPATH=str(SRC), DEEPEM_PLUGINS="no_such_plugin_module")
    done = subprocess.run([sys.executable, "-m", "deepem", "list"], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "DEEPEM_PLUGINS names 'no_such_plugin_module'" in done.stderr
