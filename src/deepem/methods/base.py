"""The method interface. A training method is two (or more) updates that share one model: given a
batch it returns one loss per parameter group ("theta" for the decoder, "phi" for the encoder, and
any group the method owns itself), plus diagnostics. The trainer minimises each loss with respect to
its own group only, so a method never has to detach one group from another's loss; it only decides
which tensors are coefficients (importance weights are always detached).

Lifecycle: a method is built from its options, then bound to a model (`bind`) before optimisers are
built and checkpoints loaded. Binding checks that the model offers what the method requires (a
reparameterisable q, a q density, continuous z) and lets the method build networks sized to the model
(a discriminator, a baseline). Then `method(model, x, mask=None, generator=None)` is called once per
batch; every random draw the method makes comes from `generator` (None: torch's global default
generator), so a caller that passes the generator a run uses reproduces the library's draws in order.

The registry of built-in methods is `METHODS` below: declared here so that a refusal can name the methods
that would work, filled in registry.py (one line per method), which imports every method module."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from deepem.errors import UserError
from deepem.inference.capabilities import CONTINUOUS, Q_DENSITY, RSAMPLE
from deepem.inference.constants import constant
from deepem.inference.distributions import DensityUnavailableError, DiagonalGaussian, LatentDistribution
from deepem.models.lvm import DeepLatentModel

THETA = "theta"
PHI = "phi"

#: what each requirement means, for error messages
REQUIREMENT_TEXT = {
    RSAMPLE: "a reparameterisable q(z|x) (pathwise gradients through z)",
    Q_DENSITY: "the density log q(z|x) (importance weights)",
    CONTINUOUS: "continuous latents",
}


class IncompatibleModelError(UserError, ValueError):
    """The model does not offer what the method requires; the message names methods that fit."""


@dataclass
class Draws:
    """K draws z ~ q(z | x) per data point with every log density a method needs, computed once.

    z carries gradient to φ when drawn by reparameterisation; log_prior and log_lik carry gradient to θ
    (and to φ through z); log_q carries gradient to φ through both z and q's parameters. log_q is None
    for a q without a density (implicit): asking for log_w then raises DensityUnavailableError."""

    z: Tensor  # (K, B, Dz)
    log_q: Tensor | None  # (K, B)
    log_prior: Tensor  # (K, B)
    log_lik: Tensor  # (K, B)
    q: LatentDistribution  # the proposal z was drawn from (with live parameters)

    @property
    def log_joint(self) -> Tensor:
        return self.log_prior + self.log_lik

    @property
    def log_w(self) -> Tensor:
        """log p(x, z) - log q(z | x)."""
        if self.log_q is None:
            raise DensityUnavailableError("these draws come from a q(z|x) without a density: "
                                          "log-weights need log q")
        return self.log_joint - self.log_q

    @property
    def q_mean(self) -> Tensor:
        return self._gaussian().loc

    @property
    def q_std(self) -> Tensor:
        return self._gaussian().std

    def _gaussian(self) -> DiagonalGaussian:
        if not isinstance(self.q, DiagonalGaussian):
            raise TypeError(f"q is a {type(self.q).__name__}, not a diagonal Gaussian: it has no mean and std")
        return self.q

    def first(self, n: int) -> Draws:
        """The first n draws (all of them when n is their number)."""
        if n == self.z.shape[0]:
            return self
        log_q = None if self.log_q is None else self.log_q[:n]
        return Draws(self.z[:n], log_q, self.log_prior[:n], self.log_lik[:n], self.q)


def draw(model: DeepLatentModel, x: Tensor, k: int, reparameterize: bool = True,
         stop_q_params: bool = False, generator: torch.Generator | None = None, *,
         mask: Tensor | None = None, std_scale: float = 1.0, joint_grad: bool = True) -> Draws:
    """Draw z ~ q(z | x) K times and evaluate log q, log p(z), log p(x_obs | z) in one batched pass.

    reparameterize=False detaches z (score-function and wake-phase methods); True needs a q with an
        rsample and raises NotReparameterizableError otherwise.
    stop_q_params=True evaluates log q with q's parameters detached, so log q depends on φ only
        through z: the form DReG and STL need.
    mask: observed-data mask (True = observed); log_lik sums observed dimensions only.
    std_scale widens a Gaussian q's std (IWEM's proposal); the weights then use the widened density.
    joint_grad=False evaluates log p(x, z) without a graph (weights needed only as numbers)."""
    q = model.encode(x, mask)
    if std_scale != 1.0:
        if not isinstance(q, DiagonalGaussian):
            raise TypeError(f"std_scale needs a diagonal Gaussian q, this model's is {q.description}")
        q = q.scaled(std_scale)
    z = q.rsample(k, generator) if reparameterize else q.sample(k, generator)
    log_q = (q.detach() if stop_q_params else q).log_prob(z) if q.has_log_prob else None
    with nullcontext() if joint_grad else torch.no_grad():
        log_prior = model.log_prior(z)
        log_lik = model.log_likelihood(x, z, mask)
    return Draws(z, log_q, log_prior, log_lik, q)


def device_generator(device: torch.device) -> torch.Generator | None:
    """The generator torch's global draws use on `device` (torch.default_generator on CPU, the device's
    default CUDA generator): passed to a method explicitly, it gives the numbers `generator=None` gives."""
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        return torch.cuda.default_generators[torch.cuda.current_device() if device.index is None else device.index]
    return None


@dataclass
class MethodOutput:
    """Losses to minimise, keyed by parameter group; the same tensor may serve several groups.

    Diagnostics are detached 0-dim tensors (or floats): the trainer turns them into numbers only when
    it logs, so a step costs no device synchronisation per value."""

    losses: dict[str, Tensor]
    diagnostics: dict[str, Tensor | float] = field(default_factory=dict)
    log_w: Tensor | None = None  # the batch's log-weights, for non-finite checks


def weight_diagnostics(log_w: Tensor, log_sum: Tensor | None = None, iw_bound: Tensor | None = None
                       ) -> dict[str, Tensor]:
    """Bound estimates and weight quality of a (K, B) log-weight tensor, as detached 0-dim tensors.

    A method that has computed them already may pass `log_sum` = logsumexp(log_w, 0) and `iw_bound` =
    log_mean_exp(log_w).mean() (the same numbers either way). Kish's ESS (Σw)²/Σw² is taken as 1/Σŵ² with
    the self-normalised weights ŵ = exp(log_w − logsumexp log_w): one logsumexp, not the two of
    `effective_sample_size` (the same value to float rounding; this runs on every step of most methods)."""
    log_w = log_w.detach()
    k = log_w.shape[0]
    log_sum = torch.logsumexp(log_w, 0) if log_sum is None else log_sum.detach()
    if iw_bound is None:
        iw_bound = (log_sum - constant(math.log(k), log_sum)).mean()
    normalised = (log_w - log_sum).exp_()
    ess = normalised.mul_(normalised).sum(0).reciprocal_()
    return {"elbo": log_w.mean(), "iw_bound": iw_bound.detach(), "ess_fraction": ess.mean() / constant(k, ess)}


class Method(nn.Module):
    """Base class. Subclasses set `name`, `requires`, and implement `forward(model, x, mask=None)`.

    A method is an nn.Module so that its own parameters (a discriminator, a baseline network) and its
    state (an annealing coefficient, as a buffer) are saved in checkpoints with the model."""

    name: ClassVar[str] = ""
    #: parameter groups this method's losses update; the trainer builds one optimiser for each.
    loss_groups: ClassVar[tuple[str, ...]] = (THETA, PHI)
    #: what the model must offer (`inference.distributions`: RSAMPLE, Q_DENSITY, CONTINUOUS).
    requires: ClassVar[frozenset[str]] = frozenset({RSAMPLE, Q_DENSITY})
    #: the optimiser settings of the method's paper, per parameter group (e.g. {"theta": {"lr": 1e-3}};
    #: keys "lr", "betas", "steps" per batch); empty: the trainer's own defaults for every group.
    default_optim: ClassVar[dict[str, dict[str, Any]]] = {}
    #: S seeds may train as one vmapped step (training/vectorised.py): one loss, q's ε the only noise
    vectorisable: ClassVar[bool] = False
    #: former names of constructor options -> their names now, so that options saved by older runs
    #: (config.json) still build the method (applied by `registry.make_method`).
    option_aliases: ClassVar[dict[str, str]] = {}
    #: what q(z|x) was trained on, so the input imputation and scoring feed it by default:
    #: "zero-filled" (x with missing cells set to 0, MIWAE) or "completed" (x completed from the model,
    #: miss-IWEM)
    imputation_proposal: ClassVar[str] = "zero-filled"
    #: whether the forward pass may read a device value on the host (which waits for the device; on CPU
    #: it costs nothing). The training step sets it once per instance, False under the device decision
    #: (training/devices.py). Only a method with a cheaper form that reads looks at it (REM: its Cholesky
    #: retries stop early); every other forward pass reads nothing on the host at all.
    host_reads: bool = True

    def __init__(self, particles: int = 1) -> None:
        super().__init__()
        if particles < 1:
            raise ValueError(f"particles (K) must be >= 1, got {particles}")
        self.particles = particles

    def bind(self, model: DeepLatentModel) -> None:
        """Check that `model` fits this method (IncompatibleModelError otherwise) and build whatever
        the method owns that depends on the model. Call before building optimisers or loading a
        checkpoint. Subclasses that own networks extend this and call super().bind(model) first."""
        check_compatible(type(self), model)

    def forward(self, model: DeepLatentModel, x: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> MethodOutput:  # pragma: no cover
        """The losses of one batch; every draw comes from `generator` (None: the global default one)."""
        raise NotImplementedError

    def extra_parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups owned by the method itself (none by default)."""
        return {}

    def after_update(self) -> None:
        """Called after every optimisation step; annealing schedules advance here."""

    def after_epoch(self, epoch: int) -> None:
        """Called at the end of every epoch (0-based index of the epoch just finished)."""


#: the built-in methods by name (the CLI's --method); filled by registry.py, one line per method
METHODS: dict[str, type[Method]] = {}


def compatible_methods(model: DeepLatentModel) -> list[str]:
    """Names of the registered methods whose requirements this model meets."""
    caps = model.capabilities()
    return sorted(name for name, cls in METHODS.items() if cls.requires <= caps)


def check_compatible(method_cls: type[Method], model: DeepLatentModel) -> None:
    """Raise IncompatibleModelError naming what is missing and which methods would work."""
    missing = sorted(method_cls.requires - model.capabilities())
    if not missing:
        return
    encoder = type(model.encoder).__name__
    needs = "; ".join(REQUIREMENT_TEXT.get(m, m) for m in missing)
    working = compatible_methods(model)
    advice = f"methods that work with this model: {', '.join(working)}" if working else \
        "no built-in method works with this model"
    raise IncompatibleModelError(
        f"method {method_cls.name or method_cls.__name__!r} needs {needs}, which this model "
        f"({encoder}, {model.latent_support} latents) does not offer; {advice}"
    )
