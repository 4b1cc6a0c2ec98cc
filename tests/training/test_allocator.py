"""keep_freed_memory: a large tensor allocated again and again stops costing page faults."""

import subprocess
import sys

import pytest

# Ten IWAE training steps (K = 50, B = 20, the 784-200-200-50 model); print the minor page faults they caused.
PROBE = """
import resource, sys, torch
from deepem.methods import make_method
from deepem.models import DeepLatentModel, ModelConfig
from deepem.training.allocator import keep_freed_memory
from deepem.training.step import TrainStep
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.manual_seed(0)
torch.set_num_threads(1)
x = torch.bernoulli(torch.full((20, 784), 0.13))
step = TrainStep(DeepLatentModel.from_config(ModelConfig(), 784), make_method("iwae", particles=50))
for _ in range(3):
    step(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step(x)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run_probe(mode: str, env: dict | None = None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    import os

    applied, kept = run_probe("keep")
    if applied != "True":
        pytest.skip("malloc is not glibc's")
    _, system = run_probe("system")
    # the (1000, 784) logits alone are 766 pages of 4 KiB; measured about 530 faults per step without,
    # under 10 with it
    assert system > 10 * 200
    assert kept < system / 10
    _, opted_out = run_probe("keep", env={**os.environ, "DEEPEM_KEEP_FREED_MEMORY": "0"})
    assert opted_out > 10 * 200
