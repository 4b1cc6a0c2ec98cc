"""The registered methods' names and options, declared without torch: each option's type, default, help,
range and choices. methods/registry.py checks a method's options against these (make_method, and a run's
config before anything is built), `deepem list` and `deepem train --method M --help` show them, and
tests/cli/test_registry_facts.py checks them against the constructors (names, types, defaults, and that
each constructor refuses what the declaration refuses). A method registered from outside the package
may declare its options as a dataclass `Options` of its own; without one its constructor's signature
gives them (names, types, defaults). Plain `Setting` records, not dataclasses: `deepem --help` imports this
module, and making a class per method would cost it time."""

from __future__ import annotations

from typing import Any

from deepem.declarations.estimators import TEMPERATURE_SCHEDULE_NAMES
from deepem.declarations.model import ACTIVATION_NAMES
from deepem.settings import Setting, requirement

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


def option(name: str, kind: Any, default: Any, help: str, **limits: Any) -> Setting:
    """One method option (no flag of its own: --option NAME=VALUE sets it)."""
    return Setting(name, kind, default, help, flag=False, **limits)


def options(*declared: Setting) -> dict[str, Setting]:
    """A method's options by name, in its constructor's order."""
    return {s.name: s for s in declared}


def particles(default: int, minimum: int = 1) -> Setting:
    return option("particles", int, default, K, minimum=minimum)


P_SAMPLES = option("p_samples", int | None, None, "J, the P-step's draws (the paper finds 50 best)", minimum=1,
                   shown="none: as K")
PROPOSAL_STD_SCALE = option("proposal_std_scale", float, 1.0, "widen q's std by this factor for the proposal "
                            "(1: off)", above=0)
IWEM_ANNEALING = (
    option("alpha_start", float, 0.0, "the annealing controller a's first value", minimum=0, maximum=1),
    option("alpha_step", float, 0.01, "a rises by this every alpha_every alpha_units, capped at 1", minimum=0),
    option("alpha_every", int, 2500, "how many alpha_units between rises of a", minimum=1),
    option("alpha_unit", str, "updates", "what alpha_every counts", choices=ALPHA_UNITS),
)
COMPLETION = option("completion", str, "sample", "how x is completed once per step: a draw of x_m ~ p(x_m | z) "
                    "(the paper's), its mean, or zeros (then q sees MIWAE's input)", choices=COMPLETIONS)
REM = (
    particles(50, minimum=2),  # a covariance needs two particles
    option("covariance", str, "unweighted", "how the hyperproposal's covariance is estimated from the particles: "
           "unweighted (eq. 19, full rank, the authors' code) or weighted by the normalised importance weights "
           "(eq. 18; use it with large K)", choices=COVARIANCES),
    option("jitter", float, 1e-6, "added to the covariance's diagonal (the paper's epsilon; formerly eps)", minimum=0),
)
AVB = (
    option("discriminator_hidden", list[int] | None, None, "the discriminator T's hidden widths", minimum=1,
           shown="the encoder's, or 200,200"),
    option("discriminator_activation", str, "tanh", "the discriminator's activation", choices=ACTIVATION_NAMES),
    option("adaptive_contrast", bool, False, "adaptive contrast (Mescheder et al. sec. 3.3): T compares q with a "
           "Gaussian of q's mean and std"),
    option("contrast_draws", int, 32, "draws that estimate an implicit q's mean and std (adaptive contrast)",
           minimum=2),
)
IWAE = options(particles(5))
IWEM = options(particles(50), P_SAMPLES, *IWEM_ANNEALING, PROPOSAL_STD_SCALE)
IWEM_WOA = options(particles(50), P_SAMPLES, PROPOSAL_STD_SCALE)

#: each built-in method's options, by name
METHOD_OPTIONS: dict[str, dict[str, Setting]] = {
    "vae": options(particles(1)),
    "iwae": IWAE,
    "rws": options(particles(5), option(
        "phi_update", str, "wake", "how q is trained: the wake phase (q fitted to the weighted particles), the sleep "
        "phase (q fitted to dreams z, x ~ p) or both", choices=PHI_UPDATES)),
    "rem-v1": options(*REM),
    "rem-v2": options(*REM, option("phi_proposal", str, "q", "the particles the encoder is fitted to: drawn from q "
                                   "(REM v2) or from the hyperproposal s", choices=PHI_PROPOSALS)),
    "iwem": IWEM,
    "iwem-woo": IWEM,
    "iwem-woa": IWEM_WOA,
    "iwae-dreg": IWAE,
    "iwae-stl": IWAE,
    "aiwae": options(
        particles(5),
        option("temperatures", int, 5, "T, annealing temperatures (beta 0 and 1 included): T - 1 HMC transitions",
               minimum=2),
        option("leapfrog_steps", int, 5, "L, leapfrog steps per HMC transition", minimum=1),
        option("step_size", float, 0.05, "the initial HMC step size of every temperature", above=0),
        option("target_acceptance", float, 0.6, "HMC acceptance rate the step sizes are tuned to", above=0, below=1),
        option("adaptation_rate", float, 0.02, "multiplicative step-size change per update (0: the step size stays "
               "fixed)", minimum=0),
        option("schedule", str, "linear", "temperature schedule (linear as in the paper)",
               choices=TEMPERATURE_SCHEDULE_NAMES)),
    "wake-sleep": options(particles(1)),
    "vimco": options(particles(5, minimum=2)),  # leave-one-out baselines need two
    "nvil": options(
        particles(1),
        option("baseline_hidden", int, 100, "width of the input-dependent baseline's one tanh layer (0: none)",
               minimum=0),
        option("decay", float, 0.8, "decay of the running mean and variance of the learning signal", minimum=0,
               below=1),
        option("normalise", bool, True, "divide the learning signal by max(1, its running std)")),
    "avb": options(particles(1), *AVB),
    "iwavb": options(particles(5), *AVB),
    "miwae": IWAE,
    "miss-iwem": options(*IWEM.values(), COMPLETION),
    "miss-iwem-woa": options(*IWEM_WOA.values(), COMPLETION),
}


def describe_options(options: dict[str, Setting]) -> list[str]:
    """One line per option: NAME=DEFAULT, its help and what values it takes (`deepem list`, and `deepem train
    --method M --help`)."""
    return [f"{name}={s.default!r}: {s.help or 'no description'} ({requirement(s)})" for name, s in options.items()]
