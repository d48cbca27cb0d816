"""The model table behind `cnnlab models`: params, FLOPs, weights and small-input variants.

    from cnnlab.models.catalog import format_model_table, model_table
    print(format_model_table(model_table(input_size=32, num_classes=10)))

Models are built on the meta device: shapes and FlopCounterMode's counts without allocating or
initialising a single weight, so the whole zoo (senet154 and VGG-19 included) is tabulated in
seconds. A builder that cannot run on meta is built on the CPU instead.
"""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.errors import ConfigError
from cnnlab.models import ModelInfo, create_model, get_model_info, list_models
from cnnlab.models.summary import count_flops

COLUMNS = {  # row key -> Markdown header
    "name": "Model",
    "family": "Family",
    "params": "Params",
    "gflops": "GFLOPs",
    "pretrained": "Pretrained (offline)",
    "top1": "ImageNet top-1",
    "variant": "Variant at this size",
}


def build_for_counting(name: str, num_classes: int, input_size: int, in_chans: int) -> Any:
    """The model on the meta device (shapes only, no memory, no init time) when its builder
    allows it: enough for parameter counts, output shapes and FLOPs."""
    try:
        with torch.device("meta"):
            return create_model(
                name, num_classes=num_classes, input_size=input_size, in_chans=in_chans
            )
    except (RuntimeError, NotImplementedError):
        # Some initialisers read tensor values (e.g. .item()), which meta tensors do not have.
        return create_model(name, num_classes=num_classes, input_size=input_size, in_chans=in_chans)


def _pretrained(info: ModelInfo) -> str:
    if info.weights is None:
        return "no"
    return "yes" if info.weights.available() else "not downloaded"


def model_row(name: str, input_size: int = 224, num_classes: int = 1000) -> dict[str, Any]:
    """One row; a model that cannot be built at this size gets the reason in `variant`."""
    info = get_model_info(name)
    top1 = info.weights.top1 if info.weights is not None else None
    row: dict[str, Any] = {
        "name": name,
        "family": info.family,
        "params": None,
        "gflops": None,
        "pretrained": _pretrained(info),
        "top1": top1,
        "variant": "",
    }
    try:
        model = build_for_counting(name, num_classes, input_size, info.in_chans)
    except ConfigError as e:
        return row | {"variant": f"not available: {e}"}
    flops = count_flops(model, (info.in_chans, input_size, input_size))
    params = sum(p.numel() for p in model.parameters())
    return row | {"params": params, "gflops": flops / 1e9, "variant": model.variant}


def model_table(
    input_size: int = 224, num_classes: int = 1000, names: list[str] | None = None
) -> list[dict[str, Any]]:
    """Rows for `names` (default: every registered model) at `input_size` and `num_classes`."""
    names = list_models() if names is None else names
    return [model_row(n, input_size, num_classes) for n in names]


def _cell(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if key == "params":
        return f"{value / 1e6:.1f}M" if value >= 1e5 else f"{value:,}"
    if key == "gflops":
        return f"{value:.2f}" if value >= 0.01 else f"{value:.4f}"
    if key == "top1":
        return f"{value:.1f}%"
    return str(value).replace("|", "\\|")  # a pipe would split a Markdown cell


def format_model_table(rows: list[dict[str, Any]]) -> str:
    """An aligned Markdown table (numbers right-aligned)."""
    keys = list(COLUMNS)
    cells = [[_cell(k, r.get(k)) for k in keys] for r in rows]
    widths = [max(len(COLUMNS[k]), *(len(c[i]) for c in cells), 3) for i, k in enumerate(keys)]
    right = {"params", "gflops", "top1"}

    def line(values: list[str]) -> str:
        padded = [
            v.rjust(w) if k in right else v.ljust(w)
            for k, v, w in zip(keys, values, widths, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        ("-" * (w - 1) + ":") if k in right else "-" * w for k, w in zip(keys, widths, strict=True)
    ]
    return "\n".join([line([COLUMNS[k] for k in keys]), line(rule), *(line(c) for c in cells)])
