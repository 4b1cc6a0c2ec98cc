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

Each seed's run folder is written by its own Trainer (config.json, metrics.jsonl, checkpoints holding
that seed's parameters, Adam moments and generator state), so `evaluate`, `compare` and
`deepem train --resume` (which continues a seed alone) work on it as on any run.

Limits (refused before anything is written, see `check_vectorisable`): methods whose one loss serves θ
and φ and whose only randomness is q's reparameterised ε (vae, iwae, iwae-stl; iwae-dreg's gradient
hook on z does not survive vmap), the "mlp" architecture with Gaussian latents and an explicit encoder,
complete data, one optimiser step per batch, and nan_policy "stop" (a non-finite step of one seed stops
the group; per-seed skipping would desynchronise the shared Adam step count)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from tqdm import tqdm

from deepem.errors import UserError
from deepem.inference.distributions import DiagonalGaussian
from deepem.inference.numerics import flush_denormals
from deepem.methods.base import THETA, Method
from deepem.models.encoders import GaussianEncoder
from deepem.training.checkpoint import checkpoint_name
from deepem.training.config import TrainConfig
from deepem.training.data_order import batch_indices, epoch_data
from deepem.training.guards import NonFiniteError
from deepem.training.metrics import LOG_EVERY_STEPS, window_record
from deepem.training.optim import make_optimizers, scale_learning_rates
from deepem.training.rng import restore_rng_state
from deepem.training.schedules import learning_rate_factor
from deepem.training.signals import StopRequest
from deepem.training.state import TrainingInterrupted, resume_command
from deepem.training.trainer import Trainer
from deepem.training.validation import validation_due

#: methods whose whole step can be vectorised over seeds (see the module notes)
VECTORISABLE_METHODS = ("vae", "iwae", "iwae-stl")
VECTORISABLE_ARCHITECTURES = ("mlp",)


#: on CPU, seeds per vmapped call are limited so that one call's (seeds, K, B, D) decoder output stays
#: about this many elements (16 MB in float32): measured on a 2-core CPU, 20 seeds of IWAE K = 50 in one
#: call (16M elements) ran at 0.4 times the speed of sequential seeds, 5 seeds (4M) at 1.1 times.
CPU_ELEMENTS_PER_CALL = 4_000_000


def default_seeds_per_call(device: torch.device, elements_per_seed: int, seeds: int) -> int:
    """All seeds in one call on an accelerator; on CPU as many as keep a call's decoder output near
    CPU_ELEMENTS_PER_CALL (beyond that the batched tensors leave the caches and the group runs slower)."""
    if device.type != "cpu":
        return seeds
    return max(1, min(seeds, CPU_ELEMENTS_PER_CALL // max(elements_per_seed, 1)))


class VectorisationError(UserError, ValueError):
    """These settings cannot be trained as vectorised seeds; the message says what is supported."""


def check_vectorisable(config: TrainConfig) -> None:
    """Raise VectorisationError (one line naming what is supported) unless `config` can be vectorised."""
    supported = (f"vectorised seeds support methods {', '.join(VECTORISABLE_METHODS)} with --architecture "
                 f"{'/'.join(VECTORISABLE_ARCHITECTURES)}, Gaussian latents, an explicit encoder, complete data, "
                 "one optimiser step per batch and --nan-policy stop")
    problems = []
    if config.method not in VECTORISABLE_METHODS:
        problems.append(f"method {config.method!r}")
    if config.model.architecture not in VECTORISABLE_ARCHITECTURES:
        problems.append(f"architecture {config.model.architecture!r}")
    if config.model.latent != "gaussian":
        problems.append(f"latent {config.model.latent!r}")
    if config.model.encoder != "explicit":
        problems.append(f"encoder {config.model.encoder!r}")
    if config.missing is not None:
        problems.append(f"missing data {config.missing!r}")
    if config.nan_policy != "stop":
        problems.append(f"nan_policy {config.nan_policy!r}")
    if getattr(config, "patience", 0):  # each seed would stop at its own epoch
        problems.append(f"early stopping (patience {config.patience})")
    steps = {g: spec.get("steps", 1) for g, spec in config.optim.items() if spec.get("steps", 1) != 1}
    if steps:
        problems.append(f"several steps per batch {steps}")
    if problems:
        raise VectorisationError(f"cannot vectorise {', '.join(problems)}: {supported}; train such seeds "
                                 "one at a time (deepem train --seed N)")


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
        # (the Bernoulli kernel has a batching rule of its own: inference/fused.py, bernoulli_nll)
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


class SeedGroup:
    """Train `trainers` (one per seed, built and started as single runs, identical but for the seed) as
    one batched computation. `rng_states[s]`: `capture_rng_state()` taken right after trainer s was
    built, i.e. the generators seed s's run alone would start training from. `seeds_per_call`: seeds in
    one vmapped call (None: `default_seeds_per_call`)."""

    def __init__(self, trainers: Sequence[Trainer], rng_states: Sequence[dict[str, Any]],
                 stop: StopRequest | None = None, progress: bool = True,
                 log: Callable[[str], None] = print, seeds_per_call: int | None = None) -> None:
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
        if not isinstance(trainers[0].model.encoder, GaussianEncoder):
            raise VectorisationError("vectorised seeds need the mlp architecture's Gaussian encoder")
        self.stop = stop if stop is not None else StopRequest()
        self.progress, self.log = progress, log
        self.device = torch.device(cfg.device)
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
            self.device, cfg.particles * cfg.batch_size * models[0].data_dim, len(trainers))
        self.generators = [self._generator(state) for state in rng_states]
        self.window: dict[str, list[Tensor]] = {}  # per key, one (S,) tensor per step not yet logged
        self._saved_at: tuple[int, int] | None = None

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

    def step(self, x: Tensor) -> dict[str, Tensor]:
        """One step of every seed on its batch x[s] ((S, B, D)); returns the step's per-seed values,
        each (S,). NonFiniteError, with nothing applied, if some seed's step is not finite."""
        k, b = self.config.particles, x.shape[1]
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
            self._stop_non_finite(int((~ok).nonzero()[0]), loss)
        for opt in self.optimizers.values():
            opt.step()
        return {f"loss_{g}": loss for g in self.trainers[0].method.loss_groups} | \
            {n: torch.cat([v[n] for v in values]).detach() for n in values[0]}

    def _stop_non_finite(self, i: int, loss: Tensor) -> None:
        t = self.trainers[i]
        what = "loss or log-weights" if not torch.isfinite(loss[i]) else "input batch or gradient"
        others = "; ".join(resume_command(o.run.root) for o in self.trainers)
        raise NonFiniteError(
            f"non-finite {what} of seed {t.config.seed} at epoch {t.state.epoch}, batch {t.state.batch} (step "
            f"{t.state.step}); nothing was applied and every seed's last good checkpoint is kept. Vectorised seeds "
            f"stop on a non-finite step: continue each seed alone ({others}), e.g. with --nan-policy skip")

    # keeping each seed's Trainer in step ------------------------------------------------------------
    def _sync_seed(self, i: int) -> None:
        """Copy seed i's parameters and Adam moments into its Trainer (before validating or saving)."""
        t = self.trainers[i]
        params = dict(t.model.named_parameters())
        with torch.no_grad():
            for n in self.names:
                params[n].copy_(self.params[n][i])
        for g, names in self.group_names.items():
            opt = t.optimizers[g]
            for n in names:
                stacked = self.optimizers[g].state.get(self.params[n])
                if stacked:
                    opt.state[params[n]] = {key: (v.clone() if key == "step" else v[i].clone())
                                            for key, v in stacked.items()}

    def _flush_window(self) -> None:
        """Move the per-step values not yet logged into every seed's TrainState.window (as floats)."""
        for key, values in self.window.items():
            columns = torch.stack(values).T.tolist()
            for t, column in zip(self.trainers, columns, strict=True):
                t.state.window.setdefault(key, []).extend(column)
        self.window = {}

    def _save_all(self, started: float) -> None:
        self._flush_window()
        for i, t in enumerate(self.trainers):
            self._sync_seed(i)
            t.state.elapsed = time.perf_counter() - started
            self._restore_rngs(i)
            t.save()
        self._saved_at = (self.trainers[0].state.epoch, self.trainers[0].state.step)

    # the loop ----------------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train every seed to the configured number of epochs (from step 0: a group is not resumed;
        each seed's run resumes alone). Returns each seed's summary, as Trainer.fit does."""
        if any(t.state.step for t in self.trainers):
            raise VectorisationError("a vectorised seed group trains from step 0; resume each seed alone "
                                     "with deepem train --resume RUN")
        with flush_denormals():
            return self._fit()

    def _fit(self) -> list[dict[str, Any]]:
        cfg, trainers = self.config, self.trainers
        states = [t.state for t in trainers]
        s0 = states[0]
        bpe = trainers[0].batches_per_epoch
        started = time.perf_counter()
        bar = tqdm(total=cfg.epochs * bpe, disable=None if self.progress else True, unit="step",
                   dynamic_ncols=True, mininterval=1.0, desc=f"{len(trainers)} seeds")
        window_start = time.perf_counter()
        try:
            while s0.epoch < cfg.epochs:
                factor = learning_rate_factor(cfg.schedule, s0.epoch)
                scale_learning_rates(self.optimizers, self.settings, factor)
                for t in trainers:  # their optimisers' rates go into their checkpoints
                    scale_learning_rates(t.optimizers, t.step.settings, factor * t.state.lr_scale)
                epochs = [epoch_data(t.train_data, t.config.seed, s0.epoch, t.dynamic_binarization) for t in trainers]
                orders = torch.stack([order for order, _ in epochs])
                first = trainers[0].train_data  # one gather for all seeds when they share the data
                shared = all(data is t.train_data and _same_tensor(data, first)
                             for (_, data), t in zip(epochs, trainers, strict=True))
                while s0.batch < bpe:
                    if self.stop.requested:
                        self._interrupt(started)
                    idx = batch_indices(orders.T, s0.batch, cfg.batch_size).T  # (S, B)
                    x = trainers[0].train_data[idx] if shared else \
                        torch.stack([data[i] for (_, data), i in zip(epochs, idx, strict=True)])
                    values = self.step(x.to(self.device, cfg.torch_dtype))
                    for key, v in values.items():
                        self.window.setdefault(key, []).append(v)
                    for st in states:
                        st.batch += 1
                        st.step += 1
                        st.window_points += x.shape[1]
                    bar.update(1)
                    if s0.step % LOG_EVERY_STEPS == 0 or s0.batch == bpe:
                        self._log_window(window_start, bar)
                        window_start = time.perf_counter()
                    if cfg.checkpoint_every_steps and s0.step % cfg.checkpoint_every_steps == 0 and s0.batch < bpe:
                        self._save_all(started)
                step_due = bool(cfg.checkpoint_every_steps) and s0.step % cfg.checkpoint_every_steps == 0
                for t in trainers:
                    t.method.after_epoch(t.state.epoch)
                    t.state.epoch, t.state.batch = t.state.epoch + 1, 0
                if trainers[0].validate is not None and validation_due(s0.epoch, cfg.valid_every, cfg.epochs):
                    for i, t in enumerate(trainers):
                        self._sync_seed(i)
                        t._end_of_epoch()  # noqa: SLF001 (the trainer's own validation and its record)
                if s0.epoch % cfg.checkpoint_every == 0 or s0.epoch == cfg.epochs or step_due:
                    self._save_all(started)
                if self.stop.requested:
                    self._interrupt(started)
        finally:
            bar.close()
        elapsed = time.perf_counter() - started
        for t in trainers:
            t.state.elapsed = elapsed
        return [{"epochs": st.epoch, "steps": st.step, "seconds": elapsed, "skipped_steps": st.skipped_steps,
                 "rollbacks": st.rollbacks, "lr_scale": st.lr_scale, "best_valid": st.best_valid} for st in states]

    def _log_window(self, window_start: float, bar: tqdm) -> None:
        """Every seed's averaged record; points/s is the seed's own (the group's is S times it)."""
        self._flush_window()
        seconds = max(time.perf_counter() - window_start, 1e-9)
        for t in self.trainers:
            record = window_record(t.state, t.state.window_points / seconds)
            t._append_metrics(record)  # noqa: SLF001 (the trainer's own record keeping)
            t.state.window, t.state.window_points = {}, 0
        bar.set_postfix(epoch=self.trainers[0].state.epoch,
                        pts_s=f"{len(self.trainers) * record['points_per_sec']:.0f}")

    def _interrupt(self, started: float) -> None:
        s = self.trainers[0].state
        if self._saved_at != (s.epoch, s.step):
            self._save_all(started)
        name = self.stop.name or "stop request"
        commands = "\n".join(f"  {resume_command(t.run.root)}" for t in self.trainers)
        raise TrainingInterrupted(
            name, self.trainers[0].run.checkpoints / checkpoint_name(s.step),
            f"training of {len(self.trainers)} vectorised seeds stopped by {name} after step {s.step} (epoch "
            f"{s.epoch}, batch {s.batch}); every seed's checkpoint written. Resume each seed alone with:\n{commands}")


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    """a and b are views of the same elements (the same data, however each trainer sliced it)."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride() and a.device == b.device
