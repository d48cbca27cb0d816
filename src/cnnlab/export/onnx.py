"""A model as an ONNX file: torch's dynamo exporter, the batch dimension dynamic, cnnlab's
metadata (classes, preprocessing) in the model's `metadata_props`.

    info = to_onnx(model, torch.zeros(2, 3, 224, 224), Path("model.onnx"), metadata=props)

The exporter is `torch.onnx.export(..., dynamo=True)` (torch.export, then ONNX via onnxscript).
The legacy TorchScript-based exporter (`dynamo=False`, deprecated by torch) is used only
  - when the dynamo exporter fails on the model (the result says so, with the reason), or
  - for an opset below 18, which the dynamo exporter does not implement (its down-conversion
    fails silently on common graphs and leaves opset 18).
The trace batch must be at least 2 for a dynamic batch: torch.export specialises sizes 0 and 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError

DYNAMO_MIN_OPSET = 18  # the lowest opset torch's dynamo exporter implements
LEGACY_DEFAULT_OPSET = 17  # the legacy exporter's own default
INPUT, OUTPUT = "image", "logits"


class ExportError(CnnlabError):
    """An export that cannot be produced or cannot be trusted."""


@dataclass(frozen=True)
class OnnxInfo:
    exporter: str  # "dynamo" or "legacy"
    opset: int  # as written in the file
    notes: tuple[str, ...] = ()  # why the legacy exporter was used, if it was


def to_onnx(
    model: torch.nn.Module,
    sample: torch.Tensor,
    path: Path,
    *,
    opset: int | None = None,
    dynamic_batch: bool = True,
    metadata: Mapping[str, str],
) -> OnnxInfo:
    """Write `model` (in eval mode) to `path`; `sample` is an input batch of the right shape."""
    if dynamic_batch and sample.shape[0] < 2:
        raise ValueError("a dynamic batch needs a trace batch of at least 2 (torch.export)")
    model = model.eval()
    if opset is not None and opset < DYNAMO_MIN_OPSET:
        why = (
            f"opset {opset} is below {DYNAMO_MIN_OPSET}, the lowest the dynamo exporter "
            f"implements: used torch's legacy TorchScript-based exporter"
        )
        _legacy_export(model, sample, path, opset, dynamic_batch)
        return OnnxInfo("legacy", _finish(path, metadata, opset), (why,))
    try:
        notes = _dynamo_export(model, sample, path, opset, dynamic_batch)
        return OnnxInfo("dynamo", _finish(path, metadata, opset), notes)
    except ExportError:
        raise
    except Exception as e:  # the dynamo exporter raises many types; the fallback is documented
        first = (str(e).strip().splitlines() or [""])[0][:200]
        why = (
            f"torch's dynamo exporter failed ({type(e).__name__}: {first}); used the legacy "
            f"TorchScript-based exporter instead"
        )
    _legacy_export(model, sample, path, opset or LEGACY_DEFAULT_OPSET, dynamic_batch)
    return OnnxInfo("legacy", _finish(path, metadata, opset), (why,))


def _dynamo_export(
    model: torch.nn.Module, sample: torch.Tensor, path: Path, opset: int | None, dynamic: bool
) -> tuple[str, ...]:
    from torch.export import Dim

    shapes = ({0: Dim("batch", min=1)},) if dynamic else None
    with torch.no_grad(), out_of_place(model):
        program = torch.onnx.export(
            model, (sample,), dynamo=True, opset_version=opset, input_names=[INPUT],
            output_names=[OUTPUT], dynamic_shapes=shapes, verbose=False, optimize=False,
        )  # fmt: skip
    # Exported once: the unoptimised graph is kept (a clone sharing the weights) for when ONNX
    # Runtime refuses the optimised one, instead of exporting again (which doubled the time).
    unoptimised = program.model.clone()
    program.optimize()  # what export(optimize=True) runs, here after the renaming
    # One self-contained file: every registered model is far below protobuf's 2 GB limit.
    program.save(path, external_data=False)
    refused = ort_refuses(path)
    if refused is None:
        return ()
    # Seen with EfficientNet-Lite (TF-SAME padding, torch 2.14, onnxscript 0.7, onnxruntime
    # 1.32): the optimised graph loads in onnx but ONNX Runtime's own graph rewriting then
    # refuses it ("Node input 'pad_4' is not a graph input"); the unoptimised graph loads, and
    # ONNX Runtime applies its optimisations to it when it loads the file.
    program.model = unoptimised
    program.save(path, external_data=False)
    still = ort_refuses(path)
    if still is not None:
        raise ExportError(f"ONNX Runtime cannot load the exported graph ({still}); export "
                          f"with --format torchscript")  # fmt: skip
    return (f"ONNX Runtime refused the exporter's optimised graph ({refused}); wrote the "
            f"unoptimised graph, which it optimises itself when loading",)  # fmt: skip


@contextmanager
def out_of_place(model: torch.nn.Module) -> Iterator[None]:
    """Modules built with `inplace=True` (ReLU, ReLU6, Hardswish, timm's activations) compute
    out of place while the block runs, and in place again after it. torch.export rewrites
    every in-place call into a functional one with a decomposition of its own, which made the
    dynamo export of EfficientNet-Lite0 1.6-1.9x slower (benchmarks/RESULTS.md); the values
    and the exported graph's nodes are the same either way."""
    flipped = [m for m in model.modules() if getattr(m, "inplace", None) is True]
    for m in flipped:
        m.inplace = False
    try:
        yield
    finally:
        for m in flipped:
            m.inplace = True


def ort_refuses(path: Path) -> str | None:
    """Why ONNX Runtime (CPU, default options, as a user loads the file) cannot load `path`,
    or None when it can. The parity check needs onnxruntime anyway."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a bad graph
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return text.split("INVALID_ARGUMENT : ")[-1][:200]
    return None


def _legacy_export(
    model: torch.nn.Module, sample: torch.Tensor, path: Path, opset: int | None, dynamic: bool
) -> None:
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic else None
    with warnings.catch_warnings(), torch.no_grad():
        # Its deprecation warning is replaced by the note in OnnxInfo, which names the reason.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (sample,), str(path), dynamo=False, opset_version=opset or LEGACY_DEFAULT_OPSET,
            input_names=[INPUT], output_names=[OUTPUT], dynamic_axes=axes,
        )  # fmt: skip


def _finish(path: Path, metadata: Mapping[str, str], requested: int | None) -> int:
    """Add the metadata, check the model, return its opset; an opset other than asked is an error."""
    import onnx

    proto = onnx.load(str(path))
    kept = {p.key: p.value for p in proto.metadata_props if p.key not in metadata}
    onnx.helper.set_model_props(proto, {**kept, **dict(metadata)})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if requested is not None and opset != requested:
        raise ExportError(
            f"asked for ONNX opset {requested}, the exporter wrote opset {opset}; "
            f"use --opset {opset} or leave --opset out"
        )
    return opset
