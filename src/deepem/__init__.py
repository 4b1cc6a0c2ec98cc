"""deepem: maximum-likelihood training of deep latent variable models with importance-weighted
and EM-style estimators, and honest evaluation of the trained models.

    import deepem
    model = deepem.load("runs/table-miwae-k20-s0")   # a TrainedModel: impute, score, sample, evaluate
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: where `deepem.load` and `deepem.TrainedModel` live. They are looked up when first used (module
#: `__getattr__`), not imported here: `import deepem` runs before every CLI command, `deepem --help`
#: included, which must answer without loading torch; the artifact's module imports torch.
_TRAINED_MODEL = "deepem.workflows.trained_model"
_LAZY = {"load": "load_model", "TrainedModel": "TrainedModel"}


def __getattr__(name: str) -> object:  # (no `typing` import: it costs --help time)
    if name in _LAZY:
        return getattr(importlib.import_module(_TRAINED_MODEL), _LAZY[name])
    raise AttributeError(f"module 'deepem' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
