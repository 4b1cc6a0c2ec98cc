"""The CUDA-graph step (training/cuda_graph.py). Its bookkeeping (warm-up, capture, replay into the
captured batch, the eager step for another shape, a new capture when a learning rate changes, results
that outlive the next replay) is tested on CPU with a stand-in for the graph: 'capture' runs the step
once and puts back everything it changed (as a real capture runs nothing), 'replay' runs it again
and writes its values into the captured tensors (as a real replay does). A GraphedStep must then take
exactly the eager step's steps, bitwise. The real graph: tests/test_device_paths.py, on a GPU."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch
from training_helpers import assert_trees_equal, binary_data

from deepem.methods.registry import make_method
from deepem.models.config import ModelConfig, make_model
from deepem.training.cuda_graph import GraphedStep
from deepem.training.step import StepResult, TrainStep


def build(decision: str = "device") -> TrainStep:
    torch.manual_seed(0)
    model = make_model(ModelConfig(latent_dim=4, hidden=[16]), 16)
    return TrainStep(model, make_method("iwae", particles=3), lr=1e-2, decision=decision)


def stand_in_capture(step: TrainStep):
    """A CPU stand-in for `cuda_capture` over `step`'s state."""
    def capture(body):
        saved = (copy.deepcopy(step.model.state_dict()), copy.deepcopy(step.method.state_dict()),
                 {g: copy.deepcopy(o.state_dict()) for g, o in step.optimizers.items()}, torch.get_rng_state())
        static = body()
        grads = [(p, p.grad) for params in step.groups.values() for p in params]
        step.model.load_state_dict(saved[0])
        step.method.load_state_dict(saved[1])
        for g, o in step.optimizers.items():
            o.load_state_dict(saved[2][g])
        torch.set_rng_state(saved[3])

        def replay() -> None:
            fresh = body()
            with torch.no_grad():
                for g, loss in static.output.losses.items():
                    loss.copy_(fresh.output.losses[g])
                for k, v in static.output.diagnostics.items():
                    v.copy_(fresh.output.diagnostics[k])
                static.output.log_w.copy_(fresh.output.log_w)
                static.nonfinite.copy_(fresh.nonfinite)
                if static.evidence is not None:  # (kept for a later diagnosis: the loop's record points)
                    static.evidence.grad_sizes.copy_(fresh.evidence.grad_sizes)
                for p, grad in grads:  # the graph's gradients are its own memory
                    grad.copy_(p.grad)
                    p.grad = grad
        return static, replay
    return capture


def batches() -> list[torch.Tensor]:
    data = binary_data().train
    return [data[i:i + 20] for i in range(0, 100, 20)] + [data[:7]]  # the last batch is shorter


def test_a_graphed_step_takes_the_eager_step_s_steps_and_falls_back_on_another_shape():
    eager, graphed_step = build(), build()
    graphed = GraphedStep(graphed_step, warmup=2, capture=stand_in_capture(graphed_step), side_stream=nullcontext)
    seen = []
    for epoch in range(2):
        if epoch == 1:  # a schedule lowers the rates: the graph is captured again
            for opt in [*eager.optimizers.values(), *graphed_step.optimizers.values()]:
                for g in opt.param_groups:
                    g["lr"] = 5e-3
        for i, x in enumerate(batches()):
            torch.manual_seed(100 * epoch + i)
            expected = eager(x).settled()
            torch.manual_seed(100 * epoch + i)
            result = graphed(x)
            seen.append(graphed.last)
            settled = result.settled()
            assert not settled.problem
            assert torch.equal(settled.output.losses["theta"], expected.output.losses["theta"])
            assert torch.equal(settled.output.log_w, expected.output.log_w)
    assert seen == ["warm-up", "warm-up", "capture", "replay", "replay", "eager",
                    "capture", "replay", "replay", "replay", "replay", "eager"]
    assert_trees_equal(dict(eager.model.state_dict()), dict(graphed_step.model.state_dict()))
    assert_trees_equal({g: o.state_dict() for g, o in eager.optimizers.items()},
                       {g: o.state_dict() for g, o in graphed_step.optimizers.items()})
    assert all(not g["capturable"] for o in graphed_step.optimizers.values() for g in o.param_groups)


def test_a_replayed_result_outlives_the_next_replay_and_a_non_finite_replay_is_skipped_and_named():
    step = build()
    graphed = GraphedStep(step, warmup=1, capture=stand_in_capture(step), side_stream=nullcontext)
    x = binary_data().train[:20]
    for _ in range(3):
        first: StepResult = graphed(x)
    kept = first.output.losses["theta"].clone()
    before = copy.deepcopy(step.model.state_dict())
    bad = x.clone()
    bad[3, 4] = float("nan")
    result = graphed(bad)
    assert graphed.last == "replay"
    assert torch.equal(first.output.losses["theta"], kept)
    assert result.settled().problem.startswith("input batch (1 of 320 non-finite")
    assert_trees_equal(dict(before), dict(step.model.state_dict()))


def test_a_host_decided_step_cannot_be_graphed():
    with pytest.raises(ValueError, match="device decision only"):
        GraphedStep(build("host"))
    with pytest.raises(ValueError, match="need a CUDA device"):
        GraphedStep(build("device"))
