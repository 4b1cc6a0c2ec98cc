"""Several seeds of one run trained as one batched computation ("vectorised seeds").

S Trainers are built exactly as S separate runs would be (same config but the seed, same run folders,
same initial weights), then trained together: their parameters are stacked along a leading seed
dimension, each seed's loss is the method's own `forward` under `torch.func.vmap` (one batched matmul
per layer for all seeds), and one Adam per parameter group steps the stacked tensors.

Why each seed follows its own single-seed run:
- data: seed s's batches come from `epoch_data(train, s, epoch)`, as alone;
- noise: a single-seed run draws its particles' ε from the global torch generator of its device, seeded
  by the seed and advanced by the model's initialisation. Each seed here gets a private generator in that
  same state, and ε of shape (K, B, Dz) is drawn from it outside vmap, step after step, in the order the
  run alone draws it; the method's q hands out that ε instead of drawing (`_FedGaussian`), so the
  method code and what it computes are unchanged;
- gradients: `vmap(grad(loss))` is each seed's own gradient (seed s's loss depends on its slice only); on
  CPU the seeds go in calls of a bounded number (`default_seeds_per_call`), on a GPU all at once;
- Adam is elementwise: its moments, eps and bias correction act per entry, so one Adam over stacked
  tensors is S independent Adams (the step count is shared, and equal, since every seed steps).
Results agree with single-seed runs to float rounding, not bitwise: batched matmuls and their backward
sum in another order than the per-seed ones.

The loop is the one every run trains with (loop.py): it hands S Trainers to `SeedStepper`, which takes
their stacked step; before validating or checkpointing seed s it asks the stepper to copy seed s's
parameters, Adam moments and generator into that seed's own objects (`export`).

Each seed's run folder is written by its own Trainer (config.json, metrics.jsonl, checkpoints holding
that seed's parameters, Adam moments and generator state), so `evaluate`, `compare` and
`deepem train --resume` (which continues a seed alone) work on it as on any run.

Limits (refused before anything is written, see vectorisable.py): methods whose one loss serves θ
and φ and whose only randomness is q's reparameterised ε (`Method.vectorisable`: vae, iwae, iwae-stl;
iwae-dreg's gradient hook on z does not survive vmap), the "mlp" architecture with Gaussian latents and
an explicit encoder, complete data, one optimiser step per batch, and nan_policy "stop" (a non-finite
step of one seed stops the group; per-seed skipping would desynchronise the shared Adam step count)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from deepem.inference.distributions import DIAGONAL_Q, DiagonalGaussian
from deepem.methods.base import THETA, Method
from deepem.training.data_order import batch_indices, epoch_data
from deepem.training.loop import fit_runs
from deepem.training.optim import make_optimizers, scale_learning_rates
from deepem.training.rng import restore_rng_state
from deepem.training.schedules import learning_rate_factor
from deepem.training.signals import StopRequest
from deepem.training.steppers import StepReport
from deepem.training.trainer import Trainer
from deepem.training.vectorisable import VectorisationError, check_vectorisable, default_seeds_per_call


class _FedGaussian(DiagonalGaussian):
    """q(z|x) whose reparameterised draw uses ε given in advance (drawn outside vmap from the seed's own
    generator) instead of drawing it: z = loc + std * ε, the arithmetic of DiagonalGaussian.rsample."""

    def __init__(self, q: DiagonalGaussian, eps: Tensor) -> None:
        super().__init__(q.loc, q.std)
        self.eps = eps

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if n != self.eps.shape[0]:
            raise RuntimeError(f"vectorised seeds pre-drew {self.eps.shape[0]} particles, the method asked for {n}")
        return self.loc + self.std * self.eps


class _NoiseFedModel:
    """The model as the method sees it inside vmap: q hands out the pre-drawn ε; densities unchanged."""

    def __init__(self, model: nn.Module, eps: Tensor) -> None:
        self.model, self.eps = model, eps

    def encode(self, x: Tensor, mask: Tensor | None = None) -> DiagonalGaussian:
        q = self.model.encode(x, mask)
        if not isinstance(q, DiagonalGaussian):
            raise VectorisationError(f"vectorised seeds need a diagonal Gaussian q(z|x), got {type(q).__name__}")
        return _FedGaussian(q, self.eps)

    def log_prior(self, z: Tensor) -> Tensor:
        return self.model.log_prior(z)

    def log_likelihood(self, x: Tensor, z: Tensor, mask: Tensor | None = None) -> Tensor:
        # (the Bernoulli kernel has a batching rule of its own: models/bernoulli_head.py, bernoulli_nll)
        return self.model.log_likelihood(x, z, mask)


class _SeedLoss(nn.Module):
    """One seed's loss as a module whose parameters functional_call replaces by that seed's slice."""

    def __init__(self, model: nn.Module, method: Method) -> None:
        super().__init__()
        self.model = model
        self._method = (method,)  # not a submodule: its state is not stacked (supported methods have none)

    def forward(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        out = self._method[0](_NoiseFedModel(self.model, eps), x)
        return out.losses[THETA], out.log_w, out.diagnostics


class SeedStepper:
    """The step of `trainers` (one per seed, built as single runs, identical but for the seed) as one
    batched computation. `rng_states[s]`: `capture_rng_state()` taken right after trainer s was built,
    i.e. the generators seed s's run alone would start training from. `seeds_per_call`: seeds in one
    vmapped call (None: `default_seeds_per_call`). Refuses (VectorisationError) what it cannot vectorise,
    before anything is written."""

    def __init__(self, trainers: Sequence[Trainer], rng_states: Sequence[dict[str, Any]],
                 seeds_per_call: int | None = None) -> None:
        if not trainers or len(trainers) != len(rng_states):
            raise ValueError("a seed group needs one trainer and one RNG state per seed")
        self.trainers, self.rng_states = list(trainers), list(rng_states)
        self.config = cfg = trainers[0].config
        check_vectorisable(cfg)
        same = [t.config.to_dict() | {"seed": cfg.seed} for t in trainers]
        if any(c != same[0] for c in same) or len({t.config.seed for t in trainers}) != len(trainers):
            raise VectorisationError("vectorised seeds must share every setting but the seed, and the seeds must "
                                     "differ")
        if any(t.train_mask is not None for t in trainers):
            raise VectorisationError("vectorised seeds need complete data (no --missing)")
        if DIAGONAL_Q not in trainers[0].model.capabilities():
            raise VectorisationError("vectorised seeds need a model whose q(z|x) is one diagonal Gaussian "
                                     "(the mlp architecture's explicit Gaussian encoder)")
        self.label = f"{len(trainers)} seeds"
        self.device = torch.device(cfg.device)
        self.particles = trainers[0].method.particles
        models = [t.model for t in trainers]
        # Stacked copies of every seed's parameters (leaves the optimisers own) and buffers.
        self.names = [n for n, _ in models[0].named_parameters()]
        self.params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
                       for n in self.names}
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models])
                        for n, _ in models[0].named_buffers()}
        name_of = {id(p): n for n, p in models[0].named_parameters()}
        self.group_names = {g: [name_of[id(p)] for p in ps] for g, ps in trainers[0].step.groups.items()}
        self.settings = trainers[0].step.settings
        self.optimizers = make_optimizers({g: [self.params[n] for n in ns] for g, ns in self.group_names.items()},
                                          self.settings)
        self.template = _SeedLoss(copy.deepcopy(models[0]), trainers[0].method)
        self._grad = vmap(grad(self._loss_and_values, has_aux=True))
        self.seeds_per_call = seeds_per_call or default_seeds_per_call(
            self.device, self.particles * cfg.batch_size * models[0].data_dim, len(trainers))
        self.generators = [self._generator(state) for state in rng_states]
        self.window: dict[str, list[Tensor]] = {}  # per key, one (S,) tensor per step not yet logged
        self.orders: Tensor | None = None
        self.epochs: list[tuple[Tensor, Tensor]] = []
        self.shared = False

    # random numbers ------------------------------------------------------------------------------
    def _generator(self, state: dict[str, Any]) -> torch.Generator:
        """A private generator in the state of the global generator the run alone draws ε from."""
        gen = torch.Generator(device=self.device)
        gen.set_state(state["torch"] if self.device.type == "cpu" else state["cuda"][self._cuda_index()])
        return gen

    def _cuda_index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def _restore_rngs(self, i: int) -> None:
        """Put the global generators where seed i's run alone would have them now (for its checkpoint)."""
        state = dict(self.rng_states[i])
        if self.device.type == "cpu":
            state["torch"] = self.generators[i].get_state()
        else:
            cuda = list(state["cuda"])
            cuda[self._cuda_index()] = self.generators[i].get_state()
            state["cuda"] = cuda
        restore_rng_state(state)

    # the step --------------------------------------------------------------------------------------
    def _seed_loss(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, eps: Tensor
                   ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        tensors = {f"model.{n}": v for n, v in params.items()} | {f"model.{n}": v for n, v in buffers.items()}
        return functional_call(self.template, tensors, (x, eps))

    def _loss_and_values(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, eps: Tensor
                         ) -> tuple[Tensor, tuple[Tensor, Tensor, dict[str, Tensor]]]:
        loss, log_w, diagnostics = self._seed_loss(params, buffers, x, eps)
        return loss, (loss.detach(), log_w.detach(), diagnostics)

    def step_on(self, x: Tensor) -> StepReport:
        """One step of every seed on its batch x[s] ((S, B, D)); the step's per-seed values, each (S,),
        go to the window. If some seed's step is not finite, nothing is applied to any seed and the
        report names the first such seed."""
        k, b = self.particles, x.shape[1]
        dz = self.trainers[0].model.latent_dim
        dtype = self.config.torch_dtype
        eps = torch.stack([torch.randn((k, b, dz), generator=g, dtype=dtype, device=self.device)
                           for g in self.generators])
        count, chunk = len(self.trainers), self.seeds_per_call
        losses, finite, values = [], [], []
        for lo in range(0, count, chunk):
            part = slice(lo, min(lo + chunk, count))
            # Each seed's own gradient, for `chunk` seeds at once (vmap of grad: nothing mixes seeds).
            grads, (loss, log_w, diagnostics) = self._grad(
                {n: p.detach()[part] for n, p in self.params.items()},
                {n: v[part] for n, v in self.buffers.items()}, x[part], eps[part])
            for n, g in grads.items():
                if chunk >= count:
                    self.params[n].grad = g
                else:
                    if self.params[n].grad is None:
                        self.params[n].grad = torch.zeros_like(self.params[n])
                    self.params[n].grad[part] = g
            grad_sums = torch.stack([g.flatten(1).sum(1) for g in grads.values()])
            finite.append(torch.isfinite(x[part]).flatten(1).all(1) & torch.isfinite(loss)
                          & torch.isfinite(log_w).flatten(1).all(1) & torch.isfinite(grad_sums).all(0))
            losses.append(loss)
            values.append(diagnostics)
        ok, loss = torch.cat(finite), torch.cat(losses)
        if not bool(ok.all()):  # one device synchronisation for every check of every seed
            i = int((~ok).nonzero()[0])
            what = "loss or log-weights" if not torch.isfinite(loss[i]) else "input batch or gradient"
            return StepReport(b, what, i)
        for opt in self.optimizers.values():
            opt.step()
        step_values = {f"loss_{g}": loss for g in self.trainers[0].method.loss_groups} | \
            {n: torch.cat([v[n] for v in values]).detach() for n in values[0]}
        for key, v in step_values.items():
            self.window.setdefault(key, []).append(v)
        return StepReport(b)

    # what the loop asks of a stepper -----------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        scale_learning_rates(self.optimizers, self.settings, learning_rate_factor(self.config.schedule, epoch))
        trainers = self.trainers
        self.epochs = [epoch_data(t.train_data, t.config.seed, epoch, t.dynamic_binarization) for t in trainers]
        self.orders = torch.stack([order for order, _ in self.epochs])
        first = trainers[0].train_data  # one gather for all seeds when they share the data
        self.shared = all(data is t.train_data and _same_tensor(data, first)
                          for (_, data), t in zip(self.epochs, trainers, strict=True))

    def step(self, batch: int) -> StepReport:
        idx = batch_indices(self.orders.T, batch, self.config.batch_size).T  # (S, B)
        x = self.trainers[0].train_data[idx] if self.shared else \
            torch.stack([data[i] for (_, data), i in zip(self.epochs, idx, strict=True)])
        return self.step_on(x.to(self.device, self.config.torch_dtype))

    def flush(self) -> None:
        """Move the per-step values not yet logged into every seed's TrainState.window (as floats)."""
        for key, values in self.window.items():
            columns = torch.stack(values).T.tolist()
            for t, column in zip(self.trainers, columns, strict=True):
                t.state.window.setdefault(key, []).extend(column)
        self.window = {}

    def settle(self) -> list[StepReport]:
        """(every step is settled when taken)"""
        return []

    def export(self, run: int) -> None:
        """Copy seed `run`'s parameters and Adam moments into its Trainer, and put the global generators
        where its run alone would have them now (for its checkpoint)."""
        t = self.trainers[run]
        params = dict(t.model.named_parameters())
        with torch.no_grad():
            for n in self.names:
                params[n].copy_(self.params[n][run])
        for g, names in self.group_names.items():
            opt = t.optimizers[g]
            for n in names:
                stacked = self.optimizers[g].state.get(self.params[n])
                if stacked:
                    opt.state[params[n]] = {key: (v.clone() if key == "step" else v[run].clone())
                                            for key, v in stacked.items()}
        self._restore_rngs(run)


def train_seeds_together(stepper: SeedStepper, stop: StopRequest | None = None, progress: bool = True
                         ) -> list[dict[str, Any]]:
    """Train every seed of `stepper` to the configured number of epochs with the one loop (from step 0:
    a group is not resumed; each seed's run resumes alone). Returns each seed's summary, as Trainer.fit."""
    trainers = stepper.trainers
    if any(t.state.step for t in trainers):
        raise VectorisationError("a vectorised seed group trains from step 0; resume each seed alone "
                                 "with deepem train --resume RUN")
    return fit_runs(trainers, stepper, stop if stop is not None else StopRequest(), progress=progress)


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    """a and b are views of the same elements (the same data, however each trainer sliced it)."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride() and a.device == b.device
