"""The registered methods' names and options, declared without torch: each option's type, default, help,
range and choices. methods/registry.py checks a method's options against these (make_method, and a run's
config before anything is built), `deepem list` and `deepem train --method M --help` show them, and
tests/cli/test_registry_facts.py checks them against the constructors (names, types, defaults, and that
each constructor refuses what the declaration refuses). A method registered from outside the package
may declare its options as a dataclass `Options` of its own; without one its constructor's signature
gives them (names, types, defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from deepem.declarations.estimators import TEMPERATURE_SCHEDULE_NAMES
from deepem.declarations.model import ACTIVATION_NAMES
from deepem.settings import Setting, requirement, setting

#: methods/registry.py METHODS, in its order
METHOD_NAMES = ("vae", "iwae", "rws", "rem-v1", "rem-v2", "iwem", "iwem-woo", "iwem-woa", "iwae-dreg", "iwae-stl",
                "aiwae", "wake-sleep", "vimco", "nvil", "avb", "iwavb", "miwae", "miss-iwem", "miss-iwem-woa")
#: methods/rws.py PHI_UPDATES, inference/moments.py COVARIANCES, methods/rem.py PHI_PROPOSALS,
#: methods/iwem.py ALPHA_UNITS, models/completion.py COMPLETIONS
PHI_UPDATES = ("wake", "sleep", "wake-sleep")
COVARIANCES = ("weighted", "unweighted")
PHI_PROPOSALS = ("q", "s")
ALPHA_UNITS = ("updates", "epochs")
COMPLETIONS = ("sample", "mean", "zero")

K = "K, particles per data point (set with --particles / -k)"


def particles(default: int, minimum: int = 1) -> int:
    return setting(default, K, minimum=minimum)


@dataclass(frozen=True)
class VAEOptions:
    particles: int = particles(1)


@dataclass(frozen=True)
class IWAEOptions:
    particles: int = particles(5)


@dataclass(frozen=True)
class RWSOptions:
    particles: int = particles(5)
    phi_update: str = setting("wake", "how q is trained: the wake phase (q fitted to the weighted particles), the "
                              "sleep phase (q fitted to dreams z, x ~ p) or both", choices=PHI_UPDATES)


@dataclass(frozen=True)
class WakeSleepOptions:
    particles: int = particles(1)


@dataclass(frozen=True)
class REMOptions:
    particles: int = particles(50, minimum=2)  # a covariance needs two particles
    covariance: str = setting("unweighted", "how the hyperproposal's covariance is estimated from the particles: "
                              "unweighted (eq. 19, full rank, the authors' code) or weighted by the normalised "
                              "importance weights (eq. 18; use it with large K)", choices=COVARIANCES)
    jitter: float = setting(1e-6, "added to the covariance's diagonal (the paper's epsilon; formerly eps)", minimum=0)


@dataclass(frozen=True)
class REMv2Options(REMOptions):
    phi_proposal: str = setting("q", "the particles the encoder is fitted to: drawn from q (REM v2) or from the "
                                "hyperproposal s", choices=PHI_PROPOSALS)


def p_samples() -> int | None:
    return setting(None, "J, the P-step's draws (the paper finds 50 best)", minimum=1, shown="none: as K")


def proposal_std_scale() -> float:
    return setting(1.0, "widen q's std by this factor for the proposal (1: off)", above=0)


def completion() -> str:
    return setting("sample", "how x is completed once per step: a draw of x_m ~ p(x_m | z) (the paper's), its "
                   "mean, or zeros (then q sees MIWAE's input)", choices=COMPLETIONS)


@dataclass(frozen=True)
class IWEMOptions:
    particles: int = particles(50)
    p_samples: int | None = p_samples()
    alpha_start: float = setting(0.0, "the annealing controller a's first value", minimum=0, maximum=1)
    alpha_step: float = setting(0.01, "a rises by this every alpha_every alpha_units, capped at 1", minimum=0)
    alpha_every: int = setting(2500, "how many alpha_units between rises of a", minimum=1)
    alpha_unit: str = setting("updates", "what alpha_every counts", choices=ALPHA_UNITS)
    proposal_std_scale: float = proposal_std_scale()


@dataclass(frozen=True)
class IWEMWoaOptions:
    particles: int = particles(50)
    p_samples: int | None = p_samples()
    proposal_std_scale: float = proposal_std_scale()


@dataclass(frozen=True)
class MissIWEMOptions(IWEMOptions):
    completion: str = completion()


@dataclass(frozen=True)
class MissIWEMWoaOptions(IWEMWoaOptions):
    completion: str = completion()


@dataclass(frozen=True)
class AIWAEOptions:
    particles: int = particles(5)
    temperatures: int = setting(5, "T, annealing temperatures (beta 0 and 1 included): T - 1 HMC transitions",
                                minimum=2)
    leapfrog_steps: int = setting(5, "L, leapfrog steps per HMC transition", minimum=1)
    step_size: float = setting(0.05, "the initial HMC step size of every temperature", above=0)
    target_acceptance: float = setting(0.6, "HMC acceptance rate the step sizes are tuned to", above=0, below=1)
    adaptation_rate: float = setting(0.02, "multiplicative step-size change per update (0: the step size stays "
                                     "fixed)", minimum=0)
    schedule: str = setting("linear", "temperature schedule (linear as in the paper)",
                            choices=TEMPERATURE_SCHEDULE_NAMES)


@dataclass(frozen=True)
class VIMCOOptions:
    particles: int = particles(5, minimum=2)  # leave-one-out baselines need two


@dataclass(frozen=True)
class NVILOptions:
    particles: int = particles(1)
    baseline_hidden: int = setting(100, "width of the input-dependent baseline's one tanh layer (0: none)",
                                   minimum=0)
    decay: float = setting(0.8, "decay of the running mean and variance of the learning signal", minimum=0, below=1)
    normalise: bool = setting(True, "divide the learning signal by max(1, its running std)")


@dataclass(frozen=True)
class AVBOptions:
    particles: int = particles(1)
    discriminator_hidden: list[int] | None = setting(None, "the discriminator T's hidden widths", minimum=1,
                                                         shown="the encoder's, or 200,200")
    discriminator_activation: str = setting("tanh", "the discriminator's activation", choices=ACTIVATION_NAMES)
    adaptive_contrast: bool = setting(False, "adaptive contrast (Mescheder et al. sec. 3.3): T compares q with a "
                                      "Gaussian of q's mean and std")
    contrast_draws: int = setting(32, "draws that estimate an implicit q's mean and std (adaptive contrast)",
                                  minimum=2)


@dataclass(frozen=True)
class IWAVBOptions(AVBOptions):
    particles: int = particles(5)


#: each built-in method's options, by name
METHOD_OPTIONS: dict[str, type] = {
    "vae": VAEOptions, "iwae": IWAEOptions, "rws": RWSOptions, "rem-v1": REMOptions, "rem-v2": REMv2Options,
    "iwem": IWEMOptions, "iwem-woo": IWEMOptions, "iwem-woa": IWEMWoaOptions, "iwae-dreg": IWAEOptions,
    "iwae-stl": IWAEOptions, "aiwae": AIWAEOptions, "wake-sleep": WakeSleepOptions, "vimco": VIMCOOptions,
    "nvil": NVILOptions, "avb": AVBOptions, "iwavb": IWAVBOptions, "miwae": IWAEOptions,
    "miss-iwem": MissIWEMOptions, "miss-iwem-woa": MissIWEMWoaOptions,
}


def describe_options(options: dict[str, Setting]) -> list[str]:
    """One line per option: NAME=DEFAULT, its help and what values it takes (`deepem list`, and `deepem train
    --method M --help`)."""
    return [f"{name}={s.default!r}: {s.help or 'no description'} ({requirement(s)})" for name, s in options.items()]
