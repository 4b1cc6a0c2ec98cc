"""Training methods: one file each, one interface (see base.py), looked up by name in registry.py."""

from deepem.methods.base import PHI, THETA, Draws, Method, MethodOutput, draw
from deepem.methods.registry import METHODS, get_method_class, make_method, method_options, register_method

__all__ = [
    "METHODS",
    "PHI",
    "THETA",
    "Draws",
    "Method",
    "MethodOutput",
    "draw",
    "get_method_class",
    "make_method",
    "method_options",
    "register_method",
]
