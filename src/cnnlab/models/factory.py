"""`create_model(name, ...)`: the one way to build a registered model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.config import Init, choices
from cnnlab.errors import ConfigError, unknown
from cnnlab.models.base import CnnClassifier
from cnnlab.models.registry import ModelInfo, registered

INIT_SCHEMES = choices(Init)


def list_models(pattern: str = "") -> list[str]:
    return sorted(n for n in registered() if pattern in n)


def get_model_info(name: str) -> ModelInfo:
    if name not in registered():
        raise unknown("model", name, registered(), "run `cnnlab models` for the list")
    return registered()[name]


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
    _check_overrides(info, overrides)
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


def _check_overrides(info: ModelInfo, overrides: dict[str, Any]) -> None:
    """Builder options are checked here, so a typo is a usage error and not a TypeError."""
    import inspect

    params = inspect.signature(info.builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    own = [n for n in params if n not in ("num_classes", "in_chans", "input_size", "dropout")]
    for key in overrides:
        if key not in params:
            raise ConfigError(
                f"model '{info.name}' has no option '{key}'; its options: {', '.join(own) or 'none'}"
            )


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
