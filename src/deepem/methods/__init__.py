"""Training methods: one file each, one interface (see base.py), looked up by name in registry.py."""

from deepem.methods.base import PHI, THETA, Method, MethodOutput, Particles, draw_particles
from deepem.methods.registry import METHODS, get_method_class, make_method, method_options

__all__ = [
    "METHODS",
    "PHI",
    "THETA",
    "Method",
    "MethodOutput",
    "Particles",
    "draw_particles",
    "get_method_class",
    "make_method",
    "method_options",
]
