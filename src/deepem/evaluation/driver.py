"""One batched driver for every estimator: it walks a dataset in batches of points, draws from one
seeded generator in batch order, shares the batches over the ranks of a job (sharding.py: the
batches before a rank's block are replayed, so results equal one process's), reports progress, and
gathers the per-point columns each batch returns."""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from deepem.evaluation.results import LogLikelihoodEstimate
from deepem.evaluation.settings import EstimatorSettingError
from deepem.evaluation.sharding import Shard, batch_plan
from deepem.models.lvm import DeepLatentModel

#: reports that a number of points (possibly a fraction of a batch) is done: tqdm's `update`
Progress = Callable[[float], None]
#: (batch slices of the inputs..., replay?, progress of this batch or None) -> per-point columns
BatchFn = Callable[..., "dict[str, Tensor] | None"]


class Estimator(ABC):
    """An estimator of log p(x) for a batch of points, with its settings record (evaluation/settings.py).

    `batch` returns per-point columns, "log_likelihood" first; with replay=True it makes only the
    random draws of the batch (for a batch another rank computes) and returns None."""

    name: ClassVar[str]
    Settings: ClassVar[type]
    #: the per-point columns `batch` returns
    columns: ClassVar[tuple[str, ...]] = ("log_likelihood",)
    #: True: it estimates log p(x_o) of incomplete data and needs the observed-data mask
    observed_data: ClassVar[bool] = False

    def __init__(self, settings: Any = None, **values: Any) -> None:
        if settings is not None and values:
            raise TypeError("pass a settings record or its values, not both")
        try:
            self.settings = settings if settings is not None else self.Settings(**values)
        except TypeError as err:  # an unknown setting
            raise EstimatorSettingError(f"{err}; the {self.name} estimator's settings are "
                                        f"{', '.join(self.Settings.__dataclass_fields__)}") from err

    @abstractmethod
    def check(self, model: DeepLatentModel, data: Tensor, mask: Tensor | None) -> None:
        """Raise, naming the way out, if this estimator cannot run on the model or data."""

    @abstractmethod
    def batch(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None, generator: torch.Generator,
              replay: bool, progress: Progress | None) -> dict[str, Tensor] | None: ...

    @abstractmethod
    def label(self) -> str:
        """What the reported number is, e.g. "IWAE bound, K=5000"."""

    def record(self, columns: dict[str, Tensor], seed: int, batch_size: int) -> dict[str, Any]:
        """The settings an evaluation record keeps, from the gathered per-point columns."""
        return {**vars(self.settings), "seed": seed}

    def tag(self) -> str:
        """This estimator with its settings as a file-name part (evaluation records are named by it, e.g.
        "iw-k5000"): the registered name, K as kK where the settings have `particles`, then every other
        setting that differs from its default as NAMEVALUE. An estimator may say it shorter."""
        values = settings_values(self.settings)
        parts = [self.name] + ([f"k{values.pop('particles')}"] if "particles" in values else [])
        defaults = settings_defaults(type(self.settings))
        parts += [f"{name}{value}" for name, value in values.items() if value != defaults.get(name, value)]
        return "-".join(re.sub(r"[^A-Za-z0-9._-]", "", part) for part in parts)


def settings_values(settings: Any) -> dict[str, Any]:
    """A settings record's fields and their values, in declaration order."""
    if dataclasses.is_dataclass(settings):
        return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    return dict(vars(settings))


def settings_defaults(record: type) -> dict[str, Any]:
    """The declared default of every field of a settings dataclass that has one."""
    if not dataclasses.is_dataclass(record):
        return {}
    return {f.name: f.default for f in dataclasses.fields(record) if f.default is not dataclasses.MISSING}


def walk(batch: BatchFn, inputs: Sequence[Tensor | None], batch_size: int, shard: Shard | None,
         progress: Progress | None, columns: Sequence[str], empty: Tensor) -> dict[str, Tensor]:
    """Every batch of `inputs` (row-aligned tensors, None passed through) through `batch`, in order;
    the per-point columns concatenated (with a shard: every rank's, in rank order, on the CPU).
    `empty`: the column of a rank without batches."""
    n_points = next(t for t in inputs if t is not None).shape[0]
    parts: dict[str, list[Tensor]] = {c: [] for c in columns}
    for start, compute in batch_plan(n_points, batch_size, shard):
        sliced = [None if t is None else t[start:start + batch_size] for t in inputs]
        points = sliced[0].shape[0]
        reported = [0.0]

        def report(done: float, reported: list[float] = reported) -> None:
            reported[0] += done
            progress(done)

        out = batch(*sliced, not compute, report if compute and progress is not None else None)
        if not compute:
            continue
        for c in columns:
            parts[c].append(out[c])
        if progress is not None and not reported[0]:  # the batch said nothing: report it whole
            progress(points)
    local = {c: torch.cat(p) if p else empty for c, p in parts.items()}
    return local if shard is None else {c: shard.gather(t.detach().cpu()) for c, t in local.items()}


def estimate(estimator: Estimator, model: DeepLatentModel, data: Tensor, mask: Tensor | None = None, *,
             batch_size: int = 100, seed: int = 0, progress: Progress | None = None,
             shard: Shard | None = None) -> LogLikelihoodEstimate:
    """The estimate of log p(x) (with a mask, True = observed: log p(x_o)) for every row of `data`,
    drawn from a generator seeded by `seed`, so that it is reproducible; shard: this rank's part of a
    sharded evaluation (the result is the same)."""
    if batch_size < 1:
        raise EstimatorSettingError(f"invalid batch_size = {batch_size!r}: must be >= 1")
    estimator.check(model, data, mask)
    model.eval()
    p = next(model.parameters())
    generator = torch.Generator(device=p.device).manual_seed(seed)

    def run(x: Tensor, m: Tensor | None, replay: bool, report: Progress | None) -> dict[str, Tensor] | None:
        m = None if m is None else m.to(p.device)
        return estimator.batch(model, x.to(p.device, p.dtype), m, generator, replay, report)

    columns = walk(run, [data, mask], batch_size, shard, progress, estimator.columns,
                   torch.zeros(0, dtype=p.dtype, device=p.device))
    per_point = columns["log_likelihood"].detach().to("cpu", torch.float64)
    return LogLikelihoodEstimate(per_point, estimator.label(),
                                 estimator.record(columns, seed=seed, batch_size=batch_size))
