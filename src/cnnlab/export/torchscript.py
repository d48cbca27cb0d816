"""A model as a TorchScript file, with cnnlab's metadata in `_extra_files["cnnlab.json"]`.

    to_torchscript(model, torch.zeros(2, 3, 224, 224), Path("model.torchscript.pt"), metadata=props)
    module, meta = load_torchscript(Path("model.torchscript.pt"))   # meta: DeployMetadata

For LibTorch (C++) users: `torch::jit::load(path, device, extra_files)` reads the same JSON.
torch deprecates `torch.jit.trace` (2.14 warns); ONNX is cnnlab's recommended format, and the
result's notes say so. Tracing records the Python branches taken for the sample's image size:
EfficientNet's TF-style padding (models/same_padding.py) is computed from the height and width,
so the file is exact at the model's input size, the size its metadata names and cnnlab's
preprocessing produces (torch's TracerWarnings about it are silenced for that reason). Batch-size
independence is checked by the parity run (batches of 1 and of many).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from cnnlab.deploy import DeployMetadata
from cnnlab.errors import RunError

EXTRA_FILE = "cnnlab.json"
DEPRECATION_NOTE = (
    "torch deprecates TorchScript (torch 2.14 warns on torch.jit.trace and save); prefer ONNX "
    "unless you load the model from LibTorch"
)


def to_torchscript(
    model: torch.nn.Module, sample: torch.Tensor, path: Path, *, metadata: Mapping[str, str]
) -> tuple[str, ...]:
    """Trace `model` (eval mode) on `sample` and save it; returns notes for the user."""
    model = model.eval()
    with _quiet_deprecation(), warnings.catch_warnings(), torch.no_grad():
        # the padding computed from the (fixed) image size becomes constants: module docstring
        warnings.filterwarnings(
            "ignore", category=torch.jit.TracerWarning, module=r"cnnlab\.models\.same_padding"
        )
        # check_trace=False: the parity check compares the saved file on real images instead.
        traced = torch.jit.trace(model, (sample,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(dict(metadata))})
    return (DEPRECATION_NOTE,)


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    """Silence torch.jit's FutureWarnings: DEPRECATION_NOTE in the result says it once."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning
        )
        yield


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, DeployMetadata]:
    """The saved module (eval mode, on CPU) and its metadata."""
    extra = {EXTRA_FILE: ""}
    try:
        with _quiet_deprecation():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as e:
        raise RunError(f"{path} is not a loadable TorchScript file ({e}); re-export it") from e
    props = json.loads(extra[EXTRA_FILE] or "{}")
    return module.eval(), DeployMetadata.from_props(props, path)
