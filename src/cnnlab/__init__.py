"""cnnlab: train, evaluate and understand convolutional image classifiers.

The public functions are imported on first use, so `import cnnlab` (and `cnnlab --version`)
stays fast: torch, Lightning and the model zoo load only when something needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "train": "cnnlab.api", "fit": "cnnlab.api", "evaluate": "cnnlab.api",
    "predict": "cnnlab.api", "summary": "cnnlab.api", "models": "cnnlab.api",
    "load_run": "cnnlab.api", "RunResult": "cnnlab.api", "LoadedRun": "cnnlab.api",
    "report": "cnnlab.api", "explain": "cnnlab.api", "audit": "cnnlab.api",
    "doctor": "cnnlab.api",
    "export_run": "cnnlab.api",  # not `export`: that name is the cnnlab.export package
    "create_model": "cnnlab.models", "list_models": "cnnlab.models",
    "Callback": "cnnlab.callbacks", "LambdaCallback": "cnnlab.callbacks",
    "RunStatus": "cnnlab.runs",
    "lr_find": "cnnlab.api", "LRFindRun": "cnnlab.lr_search",
}  # fmt: skip

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
