"""Keras-style model summary: one row per layer with output shape, parameters, FLOPs, and the
conv arithmetic that produced the numbers.

    from cnnlab.models import create_model
    from cnnlab.models.summary import summarize
    print(summarize(create_model("smallcnn", num_classes=10), (1, 28, 28)).to_text())

    backbone.0 (Conv2d)              (N, 32, 28, 28)      288  451.58K
        output: floor((28 + 2·1 − 3) / 1) + 1 = 28; params: (3·3·1)·32 = 288

FLOPs are `torch.utils.flop_counter.FlopCounterMode`'s: 2 FLOPs per multiply-accumulate, only
for matmul-bearing ops (conv, linear, matmul, bmm, attention); pooling, norms, activations and
bias adds count 0. Each row's FLOPs are the counter's increase while that module ran, so the rows
add up to the total exactly, unless the model does matmuls outside its leaf modules (the summary
then prints the difference). One forward runs in eval mode under no_grad on a zero image of
batch 1 (zeros, not random numbers: a summary must not move the RNG a training run relies on);
a model on the meta device works too and costs no compute.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.arithmetic import (
    formula_conv_output,
    formula_conv_params,
    formula_linear_params,
    formula_pool_output,
)

BYTES_PER_MB = 1_000_000  # MB as torchinfo and Keras print it


@dataclass(frozen=True)
class LayerRow:
    name: str  # dotted path in the model ("backbone.features.0")
    type: str  # class name ("Conv2d")
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int  # trainable parameters first used by this call (0 when a module runs again)
    flops: int  # FLOPs of this call (batch 1)
    output_formula: str = ""  # conv/pool output size with the numbers filled in, per axis
    params_formula: str = ""  # conv/linear parameter count with the numbers filled in
    activation_bytes: int = 0  # size of the output tensor(s)


@dataclass
class ModelSummary:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    total_flops: int  # FlopCounterMode's total for one image
    param_bytes: int  # parameters and buffers (BatchNorm running statistics)
    # Sum of every leaf module's output size (an in-place ReLU counts again, as in torchinfo).
    activation_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def total_macs(self) -> int:
        return self.total_flops // 2

    @property
    def model_size_mb(self) -> float:
        return self.param_bytes / BYTES_PER_MB

    @property
    def activation_mb(self) -> float:
        return self.activation_bytes / BYTES_PER_MB

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: every row and every total."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "rows": [asdict(r) | {"output_shape": list(r.output_shape)} for r in self.rows],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "total_flops": self.total_flops,
            "total_macs": self.total_macs,
            "param_bytes": self.param_bytes,
            "model_size_mb": self.model_size_mb,
            "activation_bytes": self.activation_bytes,
            "activation_mb": self.activation_mb,
            "notes": list(self.notes),
        }

    def to_text(self, width: int = 100) -> str:
        """An aligned table; conv/pool/linear formulas go on an indented line under their row."""
        header = ("Layer (type)", "Output shape", "Param #", "FLOPs")
        cells = [
            (f"{r.name} ({r.type})", _shape(r.output_shape), f"{r.params:,}", _si(r.flops))
            for r in self.rows
        ]
        w_shape, w_params, w_flops = (
            max(len(header[i]), *(len(c[i]) for c in cells)) for i in (1, 2, 3)
        )
        # The name column takes what is left, but never less than 20 characters.
        w_name = max(20, width - w_shape - w_params - w_flops - 6)
        w_name = min(w_name, max(len(header[0]), *(len(c[0]) for c in cells)))
        total_w = w_name + w_shape + w_params + w_flops + 6

        def line(c: tuple[str, str, str, str]) -> str:
            name = c[0] if len(c[0]) <= w_name else c[0][: w_name - 1] + "…"
            return (
                f"{name:<{w_name}}  {c[1]:<{w_shape}}  {c[2]:>{w_params}}  {c[3]:>{w_flops}}"
            ).rstrip()

        c, h, w = self.input_shape
        out = [f'Model: "{self.name}"  input: {c}×{h}×{w}, batch 1', "_" * total_w]
        out += [line(header), "=" * total_w]
        for row, cell in zip(self.rows, cells, strict=True):
            out.append(line(cell))
            out += _formula_lines(row, max(width, total_w))
        out.append("=" * total_w)
        out += [
            f"Total params: {self.total_params:,} ({self.model_size_mb:.2f} MB with buffers)",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"FLOPs: {_si(self.total_flops)} ({_si(self.total_macs)} MACs), one {c}×{h}×{w} image",
            f"Activation memory: {self.activation_mb:.2f} MB (forward outputs, batch 1)",
            *self.notes,
            "_" * total_w,
        ]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()


def _formula_lines(row: LayerRow, width: int) -> list[str]:
    # One indented line when both formulas fit, else one wrapped line each.
    parts = [
        f"{k}: {v}"
        for k, v in (("output", row.output_formula), ("params", row.params_formula))
        if v
    ]
    joined = "    " + "; ".join(parts)
    if not parts or len(joined) <= width:
        return [joined] if parts else []
    wrap = textwrap.TextWrapper(width, initial_indent="    ", subsequent_indent="      ")
    return [ln for part in parts for ln in wrap.wrap(part)]


def _si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{int(n)}"


def _shape(shape: tuple[int, ...]) -> str:
    return "(N, " + ", ".join(str(s) for s in shape) + ")" if shape else "(N,)"


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _per_axis(h: str, w: str) -> str:
    return h if h == w else f"H {h}; W {w}"


def layer_formulas(module: nn.Module, in_hw: tuple[int, int] | None) -> tuple[str, str]:
    """(output-size formula, params formula) for Conv2d, MaxPool2d, AvgPool2d and Linear.

    `in_hw` is the (H, W) of the layer's input; conv and pool formulas need it.
    """
    if isinstance(module, nn.Linear):
        return "", formula_linear_params(
            module.in_features, module.out_features, module.bias is not None
        )
    if in_hw is None:
        return "", ""
    if isinstance(module, nn.Conv2d):
        params = formula_conv_params(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.groups,
            module.bias is not None,
        )
        if module.padding == "same":  # PyTorch pads so that the size is kept (stride 1 only)
            return f"'same' padding keeps {in_hw[0]}×{in_hw[1]}", params
        pad = (0, 0) if module.padding == "valid" else module.padding
        axes = zip(in_hw, module.kernel_size, pad, module.stride, module.dilation, strict=True)
        h, w = (formula_conv_output(*a) for a in axes)
        return _per_axis(h, w), params
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        f, s = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        p, d = _pair(module.padding), _pair(getattr(module, "dilation", 1))
        h, w = (
            formula_pool_output(n, *a, ceil_mode=module.ceil_mode)
            for n, *a in zip(in_hw, f, p, s, d, strict=True)
        )
        return _per_axis(h, w), ""
    return "", ""


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, list | tuple):
        return [t for item in x for t in _tensors(item)]
    if isinstance(x, dict):
        return [t for item in x.values() for t in _tensors(item)]
    return []


def _selected(model: nn.Module, depth: int | None) -> list[tuple[str, nn.Module]]:
    """Leaf modules, or the modules `depth` levels down (and shallower leaves)."""
    picked = []
    for name, m in model.named_modules():
        level = name.count(".") + 1 if name else 0
        leaf = next(m.children(), None) is None
        if (depth is None and leaf) or (
            depth is not None and (level == depth or (leaf and level < depth))
        ):
            picked.append((name, m))
    return picked


def _dummy_input(model: nn.Module, input_shape: tuple[int, int, int]) -> torch.Tensor:
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.zeros(1, *input_shape, device=device, dtype=dtype)


class _Recorder:
    """Forward hooks that turn one forward pass into rows (and leaf-level activation bytes)."""

    def __init__(self, model: nn.Module, depth: int | None) -> None:
        self.root = type(model).__name__
        self.rows: list[LayerRow] = []
        self.seen: set[int] = set()  # parameters already credited to a row (reused/tied modules)
        self.starts: dict[int, list[int]] = {}
        self.leaf_bytes = 0  # counted on leaves at any `depth`, so the total does not depend on it
        self.counter = FlopCounterMode(display=False)
        self.handles = []
        for name, m in _selected(model, depth):
            self.handles.append(m.register_forward_pre_hook(self._start))
            self.handles.append(m.register_forward_hook(self._row_hook(name)))
        for _, m in _selected(model, None):
            self.handles.append(m.register_forward_hook(self._count_bytes))

    def _start(self, module: nn.Module, args: Any) -> None:
        self.starts.setdefault(id(module), []).append(self.counter.get_total_flops())

    def _count_bytes(self, module: nn.Module, args: Any, output: Any) -> None:
        self.leaf_bytes += sum(t.numel() * t.element_size() for t in _tensors(output))

    def _row_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            flops = self.counter.get_total_flops() - self.starts[id(module)].pop()
            fresh = [p for p in module.parameters() if id(p) not in self.seen]
            self.seen.update(id(p) for p in fresh)
            outs, ins = _tensors(output), _tensors(args)
            in_hw = tuple(ins[0].shape[-2:]) if ins and ins[0].dim() == 4 else None
            out_f, par_f = layer_formulas(module, in_hw)
            self.rows.append(
                LayerRow(
                    name=name or self.root,
                    type=type(module).__name__,
                    output_shape=tuple(outs[0].shape[1:]) if outs else (),
                    params=sum(p.numel() for p in fresh if p.requires_grad),
                    flops=flops,
                    output_formula=out_f,
                    params_formula=par_f,
                    activation_bytes=sum(t.numel() * t.element_size() for t in outs),
                )
            )

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def summarize(
    model: nn.Module, input_shape: tuple[int, int, int], *, depth: int | None = None
) -> ModelSummary:
    """Run one forward and tabulate it; `depth=None` lists leaf modules, `depth=1` the top level."""
    rec = _Recorder(model, depth)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), rec.counter:
            model(_dummy_input(model, input_shape))
    finally:
        model.train(was_training)
        rec.remove()
    flops, rows = rec.counter.get_total_flops(), rec.rows
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    notes = []
    if getattr(model, "variant", ""):  # how this build differs from the paper's, e.g. at 32 px
        notes.append(f"Variant: {model.variant}")
    if isinstance(getattr(model, "num_classes", None), int):
        notes.append(f"Classes: {model.num_classes} (the head's outputs; --classes changes them)")
    if (rest := trainable - sum(r.params for r in rows)) > 0:
        notes.append(f"Parameters outside the listed rows (unused or parent-owned): {rest:,}")
    if (rest := flops - sum(r.flops for r in rows)) > 0:
        notes.append(f"FLOPs outside the listed rows (functional ops in parents): {_si(rest)}")
    return ModelSummary(
        name=getattr(model, "name", "") or type(model).__name__,
        input_shape=tuple(input_shape),
        rows=rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=trainable,
        total_flops=flops,
        param_bytes=sum(t.numel() * t.element_size() for t in [*params, *model.buffers()]),
        activation_bytes=rec.leaf_bytes,
        notes=notes,
    )


def count_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward on one image (FlopCounterMode); works on meta-device models."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(_dummy_input(model, input_shape))
    finally:
        model.train(was_training)
    return counter.get_total_flops()
