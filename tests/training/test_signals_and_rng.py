"""The signal handler only raises a flag (a second signal aborts), previous handlers come back
afterwards; RNG states survive the safe loader; an in-process SIGTERM stops after the step in
progress with a checkpoint and the resume command."""

# ruff: noqa: NPY002  (the test exercises numpy's legacy global generator on purpose)
from __future__ import annotations

import io
import os
import random
import signal

import numpy as np
import pytest
import torch
from training_helpers import binary_data, tiny_config

from deepem.training.checkpoint_file import list_checkpoints, load_checkpoint
from deepem.training.rng import capture_rng_state, restore_rng_state, seed_everything
from deepem.training.signals import StopRequest, graceful_stop
from deepem.workflows.train import run_training


def test_first_signal_sets_the_flag_second_aborts_and_handlers_are_restored():
    calls: list[int] = []

    def previous(signum, frame):
        calls.append(signum)

    old_term = signal.signal(signal.SIGTERM, previous)
    old_int = signal.getsignal(signal.SIGINT)
    try:
        request = StopRequest()
        with graceful_stop(request):
            os.kill(os.getpid(), signal.SIGTERM)
            assert request.requested and request.name == "SIGTERM" and request.exit_code == 143
            with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
                os.kill(os.getpid(), signal.SIGINT)
        assert calls == []  # the previous handler saw neither signal
        assert signal.getsignal(signal.SIGTERM) is previous
        assert signal.getsignal(signal.SIGINT) is old_int
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == [signal.SIGTERM]  # and it is back in charge
    finally:
        signal.signal(signal.SIGTERM, old_term)


def test_sigterm_in_process_stops_after_the_step_with_checkpoint_and_resume_command(tmp_path):
    def hook(step, x):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return x

    logs: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    code = run_training(tiny_config(), tmp_path / "run", progress=False, data=binary_data(), log=logs.append,
                        batch_hook=hook)
    assert code == 143
    assert signal.getsignal(signal.SIGTERM) is before
    assert logs[-1] == (f"training stopped by SIGTERM after step 4 (epoch 0, batch 4 of 5); checkpoint written: "
                        f"{tmp_path / 'run' / 'checkpoints' / 'ckpt-000000004.pt'}\n"
                        f"Resume with:\n  deepem train --resume {tmp_path / 'run'}")
    assert load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1])["train_state"]["step"] == 4


def test_rng_states_survive_weights_only_loading():
    seed_everything(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's state (has_gauss = 1)
    random.gauss(0, 1)  # and one in Python's (gauss_next)
    state = capture_rng_state()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    expected = (torch.rand(3), np.random.randn(3), [random.gauss(0, 1) for _ in range(3)])
    torch.rand(5), np.random.randn(5), random.random()
    restore_rng_state(loaded)
    again = (torch.rand(3), np.random.randn(3), [random.gauss(0, 1) for _ in range(3)])
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]
