"""The model registry: `@register_model` on a builder, `create_model(name, ...)` to build.

Builders are keyword-only functions
    builder(*, num_classes, in_chans, input_size, dropout, **overrides) -> CnnClassifier
that choose a small-input variant themselves when `input_size` is too small for the classic
stem, and say so in `model.variant`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.errors import ConfigError, unknown
from cnnlab.models.base import CnnClassifier
from cnnlab.models.spec import WeightsSpec

INIT_SCHEMES = ("default", "paper", "kaiming", "xavier")


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


def _ensure_loaded() -> None:
    # Registration happens on import of the family modules; importing here keeps
    # `create_model` usable from `cnnlab.models.registry` alone.
    import cnnlab.models.zoo  # noqa: F401


def list_models(pattern: str = "") -> list[str]:
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if pattern in n)


def get_model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise unknown("model", name, _REGISTRY, "run `cnnlab models` for the list")
    return _REGISTRY[name]


def create_model(
    name: str,
    *,
    num_classes: int = 1000,
    pretrained: bool = False,
    in_chans: int | None = None,
    input_size: int | None = None,
    dropout: float | None = None,
    init: str = "default",
    weights_file: str | Path | None = None,
    **overrides: Any,
) -> CnnClassifier:
    """Build a registered model; a different `num_classes` than the weights' simply means a new head."""
    info = get_model_info(name)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    if init not in INIT_SCHEMES:
        raise unknown("init scheme", init, INIT_SCHEMES)
    in_chans = info.in_chans if in_chans is None else in_chans
    input_size = info.default_input if input_size is None else input_size
    dropout = info.default_dropout if dropout is None else dropout
    if pretrained and info.weights is None:
        raise ConfigError(
            f"model '{name}' has no pretrained weights in cnnlab; drop --pretrained or "
            f"pass --weights FILE"
        )
    if pretrained and in_chans != info.weights.preprocess.input_size[0]:
        raise ConfigError(
            f"pretrained '{name}' expects {info.weights.preprocess.input_size[0]} input channels, "
            f"got in_chans={in_chans}; grayscale images are replicated to RGB for pretrained models"
        )
    build_classes = info.weights.num_classes if pretrained else num_classes
    model = info.builder(
        num_classes=build_classes,
        in_chans=in_chans,
        input_size=input_size,
        dropout=dropout,
        **overrides,
    )
    model.name = name
    if pretrained:
        info.weights.load(model)
        model.preprocess = info.weights.preprocess
        if num_classes != build_classes:
            model.reset_classifier(num_classes, dropout)
    else:
        _apply_init(model, init, info)
    if weights_file is not None:
        from cnnlab.models.weights_io import load_weights_file

        load_weights_file(model, weights_file)
    return model


def _apply_init(model: nn.Module, scheme: str, info: ModelInfo) -> None:
    if scheme == "default":
        return  # the library's own (torchvision/timm) modern initialisation
    if scheme == "paper":
        if info.paper_init is None:
            raise ConfigError(
                f"model '{info.name}' has no paper initialisation in cnnlab; "
                f"use --init default, kaiming or xavier"
            )
        info.paper_init(model)
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
