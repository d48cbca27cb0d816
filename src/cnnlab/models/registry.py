"""The model registry: the table of models and the `@register_model` decorator, nothing more.
`cnnlab.models` imports every family (which registers them) and offers `create_model`.

Builders are keyword-only functions
    builder(*, num_classes, in_chans, input_size, dropout, **overrides) -> CnnClassifier
that choose a small-input variant themselves when `input_size` is too small for the classic
stem, and say so in `model.variant`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from cnnlab.models.base import CnnClassifier
from cnnlab.models.spec import WeightsSpec


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., CnnClassifier]
    family: str
    default_input: int  # the paper's / native input side
    in_chans: int = 3  # the native channel count
    paper: str = ""  # citation
    description: str = ""
    default_dropout: float = 0.0
    weights: WeightsSpec | None = None
    # published parameter count in millions at the native size with 1000 classes
    published_params: float | None = None
    # Initialiser for --init paper; None when the paper states none we reproduce.
    paper_init: Callable[[nn.Module], None] | None = field(default=None, compare=False)
    # Trains in channels_last (NHWC) on a CPU unless NCHW measured faster for the family:
    # benchmarks/RESULTS.md, "Memory format per model". The user's --(no-)channels-last wins.
    cpu_channels_last: bool = True


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, **info: Any) -> Callable[[Callable[..., CnnClassifier]], Callable]:
    def decorator(builder: Callable[..., CnnClassifier]) -> Callable[..., CnnClassifier]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = ModelInfo(name=name, builder=builder, **info)
        return builder

    return decorator


def attach_weights(weights: dict[str, WeightsSpec]) -> None:
    """Give registered models their pretrained weight specs (kept apart from the architectures)."""
    import dataclasses

    for name, spec in weights.items():
        if name in _REGISTRY:
            _REGISTRY[name] = dataclasses.replace(_REGISTRY[name], weights=spec)


def registered() -> dict[str, ModelInfo]:
    """The table itself; `cnnlab.models.list_models` is the way in for users."""
    return _REGISTRY


def unregister_model(name: str) -> None:
    """Remove a model (tests that register a throwaway model clean up with this)."""
    _REGISTRY.pop(name, None)
