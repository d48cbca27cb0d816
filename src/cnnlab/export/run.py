"""`export_run`: a run's best model as ONNX or TorchScript, checked against PyTorch on the run's
own validation images before it is kept.

    result = export_run("runs/photos", format="onnx")
    # exported runs/photos/model.onnx (ONNX opset 20, dynamo exporter, dynamic batch, 8.9 MB)
    # parity with PyTorch on 64 val images (onnxruntime 1.32.0 (CPUExecutionProvider)): ...

The file is written next to model.safetensors (model.onnx, model.torchscript.pt) only when parity
holds; every attempt, passed or failed, is recorded in export.json under its format. A failure
is a ParityError naming the worst image, and an earlier export of that format stays untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab import fsio, runs
from cnnlab.deploy import DeployMetadata
from cnnlab.errors import EXIT_RUN, ConfigError, unknown
from cnnlab.export.onnx import ExportError, OnnxInfo, to_onnx
from cnnlab.export.parity import (
    ATOL,
    DEFAULT_IMAGES,
    RTOL,
    Parity,
    ParityImages,
    compare_logits,
    run_batched,
    torch_logits,
    validation_images,
    with_float64,
)
from cnnlab.export.torchscript import load_torchscript, to_torchscript

RECORD = "export.json"


class ExportFormat(str, Enum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"

    @property
    def filename(self) -> str:
        return "model.onnx" if self is ExportFormat.ONNX else "model.torchscript.pt"


class ParityError(ExportError):
    """The exported file does not reproduce the PyTorch model: the run's model cannot leave in
    that format (exit 5, as for an unusable checkpoint), not a usage error."""

    exit_code = EXIT_RUN


@dataclass(frozen=True)
class ExportResult:
    format: ExportFormat
    path: Path
    exporter: str  # "torch.onnx dynamo", "torch.onnx legacy (TorchScript-based)", "torch.jit.trace"
    opset: int | None
    dynamic_batch: bool
    parity: Parity
    size_bytes: int
    seconds: float
    notes: tuple[str, ...] = ()

    def line(self) -> str:
        kind = f"ONNX opset {self.opset}" if self.opset else "TorchScript"
        batch = "dynamic batch" if self.dynamic_batch else "batch 1"
        mb = self.size_bytes / 1e6
        return f"exported {self.path} ({kind}, {self.exporter}, {batch}, {mb:.1f} MB)"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(format=self.format.value, path=str(self.path), parity=self.parity.to_dict())
        d["time"] = runs.now()
        return d


def export_run(
    run: str | Path,
    *,
    format: str | ExportFormat = ExportFormat.ONNX,
    opset: int | None = None,
    dynamic_batch: bool = True,
    runs_dir: str | Path | None = None,
    images: int = DEFAULT_IMAGES,
    atol: float = ATOL,
    rtol: float = RTOL,
    log: Callable[[str], None] = print,
) -> ExportResult:
    """Export the run's best model (model.safetensors) and check it on `images` val images."""
    fmt = _format(format)
    if opset is not None and fmt is not ExportFormat.ONNX:
        raise ConfigError("--opset applies to ONNX only; drop it for --format torchscript")
    if images < 1:
        raise ConfigError(f"the parity check needs at least 1 image, got {images}")
    from cnnlab.evaluation.evaluate import load_best

    run_dir = runs.resolve_run(run, runs_dir)
    start = time.perf_counter()
    model, card = load_best(run_dir)  # as evaluate reads it (a run still training: a note)
    model = model.cpu().float().eval()
    data = validation_images(run_dir, model, limit=images)
    meta = deploy_metadata(card, model)
    # torch.export specialises a batch of 1: trace with 2 for a dynamic batch, 1 for a fixed one.
    n = 2 if dynamic_batch else 1
    sample = data.x[:n] if len(data.x) >= n else data.x[:1].expand(n, *data.x.shape[1:])
    target = run_dir / fmt.filename
    attempt: dict[str, Any] = {}

    def write_and_check(tmp: Path) -> None:
        attempt["result"] = _export_and_check(
            fmt, model, sample, tmp, data, meta, opset, dynamic_batch, atol, rtol
        )
        if not attempt["result"].parity.passed:
            raise ParityError(_failure(attempt["result"].parity, fmt))

    try:
        fsio.write_with(target, write_and_check)
    finally:
        if "result" in attempt:  # failed attempts are recorded too: their numbers help
            _record(run_dir, attempt["result"], target, time.perf_counter() - start)
    result = _finalise(attempt["result"], target, time.perf_counter() - start)
    log(result.line())
    log(result.parity.line())
    for note in result.notes:
        log(f"note: {note}")
    return result


def _format(value: str | ExportFormat) -> ExportFormat:
    try:
        return ExportFormat(value)
    except ValueError:
        raise unknown("export format", str(value), [f.value for f in ExportFormat]) from None


def deploy_metadata(card: dict[str, Any], model: torch.nn.Module) -> DeployMetadata:
    """What the exported file carries, from model.json: classes and preprocessing."""
    import cnnlab
    from cnnlab.data.transforms import resize_size

    spec = model.preprocess
    return DeployMetadata(
        classes=tuple(card["classes"]),
        size=(spec.input_size[1], spec.input_size[2]),
        resize=resize_size(spec),
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        interpolation=spec.interpolation,
        crop_pct=spec.crop_pct,
        channels="L" if spec.input_size[0] == 1 else "RGB",
        model=card["architecture"]["name"],
        variant=card.get("variant") or "",
        cnnlab_version=cnnlab.__version__,
    )


def _export_and_check(
    fmt: ExportFormat,
    model: torch.nn.Module,
    sample: torch.Tensor,
    path: Path,
    data: ParityImages,
    meta: DeployMetadata,
    opset: int | None,
    dynamic_batch: bool,
    atol: float,
    rtol: float,
) -> ExportResult:
    reference = torch_logits(model, data.x)
    x = data.x.numpy()
    if fmt is ExportFormat.ONNX:
        info: OnnxInfo = to_onnx(
            model, sample, path, opset=opset, dynamic_batch=dynamic_batch, metadata=meta.to_props()
        )
        run, runtime = _onnxruntime(path)
        exporter = "dynamo exporter" if info.exporter == "dynamo" else "legacy exporter"
        notes, written_opset = info.notes, info.opset
    else:
        notes = to_torchscript(model, sample, path, metadata=meta.to_props())
        run, runtime = _torchscript_runtime(path)
        exporter, written_opset = "torch.jit.trace", None
        dynamic_batch = True  # a traced CNN takes any batch; the parity run checks 1 and many
    logits, sizes = run_batched(run, x, dynamic_batch)
    parity = compare_logits(
        reference, logits, data.names, runtime=runtime, split=data.split, batch_sizes=sizes,
        atol=atol, rtol=rtol,
    )  # fmt: skip
    if not parity.passed:
        parity = with_float64(parity, model, data.x, logits)
    return ExportResult(
        format=fmt, path=path, exporter=exporter, opset=written_opset,
        dynamic_batch=dynamic_batch, parity=parity, size_bytes=path.stat().st_size,
        seconds=0.0, notes=tuple(notes),
    )  # fmt: skip


def _onnxruntime(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads as the reference
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runtime = f"onnxruntime {ort.__version__} (CPUExecutionProvider)"
    return (lambda x: session.run(None, {name: x})[0]), runtime


def _torchscript_runtime(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    module, _ = load_torchscript(path)  # the saved file, not the traced object in memory

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(x)).float().numpy()

    return run, f"torch.jit.load {torch.__version__}"


def _failure(parity: Parity, fmt: ExportFormat) -> str:
    return (
        f"the {fmt.value} export does not reproduce the PyTorch model: {parity.line()}; worst "
        f"image {parity.worst_image} (|Δlogit| up to {parity.worst_abs_diff:.1e}); "
        f"{parity.diagnosis()}; the file was not kept (numbers in {RECORD})"
    )


def _finalise(result: ExportResult, target: Path, seconds: float) -> ExportResult:
    from dataclasses import replace

    return replace(result, path=target, seconds=round(seconds, 1))


def _record(run_dir: Path, result: ExportResult, target: Path, seconds: float) -> None:
    path = run_dir / RECORD
    record = fsio.read_json(path) if path.exists() else {}
    entry = _finalise(result, target, seconds).to_dict()
    entry["kept"] = result.parity.passed  # a failed file is deleted, its numbers stay here
    record[result.format.value] = entry
    fsio.write_json(path, record)
