"""What a model offers a method and what a method requires of it, as names (`Method.requires`,
`DeepLatentModel.capabilities`): the support of z and what q(z | x) can do."""

from __future__ import annotations

REAL = "real"
BINARY = "binary"

# What a method may require of a model (methods.base.Method.requires), and what a model offers.
RSAMPLE = "reparameterised q"
Q_DENSITY = "q density"
CONTINUOUS = "continuous z"
DIAGONAL_Q = "diagonal Gaussian q"


def capabilities(has_rsample: bool, has_log_prob: bool, support: str, diagonal: bool = False
                 ) -> frozenset[str]:
    """The names methods use to state what they require of q and of z (see methods.base);
    `diagonal`: q is one diagonal Gaussian (a proposal whose std can be widened, IWEM)."""
    caps = set()
    if diagonal:
        caps.add(DIAGONAL_Q)
    if has_rsample:
        caps.add(RSAMPLE)
    if has_log_prob:
        caps.add(Q_DENSITY)
    if support == REAL:
        caps.add(CONTINUOUS)
    return frozenset(caps)
