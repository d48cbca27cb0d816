"""cnnlab: train, evaluate and understand convolutional image classifiers."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# The public functions are imported on first use (PEP 562), not here: `import cnnlab.deploy`
# must work where torch is not installed, and `import cnnlab` should not pay for torch up front.
_LAZY = {
    "train": "cnnlab.api",
    "evaluate": "cnnlab.api",
    "predict": "cnnlab.api",
    "summary": "cnnlab.api",
    "models": "cnnlab.api",
    "create_model": "cnnlab.models.registry",
    "list_models": "cnnlab.models.registry",
}

__all__ = list(_LAZY)

# `cnnlab.models` names both a subpackage and the `models()` function; the function has always
# won. The subpackage is a namespace package (no code, no torch): importing it now, once, means
# no later `import cnnlab.models.x` rebinds the name, and deleting the binding leaves `models`
# to __getattr__ like the other functions.
importlib.import_module("cnnlab.models")
del globals()["models"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cnnlab' has no attribute '{name}'")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
