"""Models leaving cnnlab.

- weights.py      model.safetensors + model.json, written during training (export_model) and
                  read by evaluate/predict (load_exported);
- run.py          export_run: ONNX (onnx.py) or TorchScript (torchscript.py), kept only when it
                  reproduces the PyTorch model on the run's validation images (parity.py);
- cnnlab.deploy   runs the ONNX file with onnxruntime + NumPy + Pillow, no torch.
"""

from cnnlab.export.run import ExportFormat, ExportResult, ParityError, export_run
from cnnlab.export.weights import (
    SIDECAR,
    WEIGHTS,
    export_model,
    load_exported,
    load_weights,
    read_model_json,
)

__all__ = [
    "SIDECAR",
    "WEIGHTS",
    "ExportFormat",
    "ExportResult",
    "ParityError",
    "export_model",
    "export_run",
    "load_exported",
    "load_weights",
    "read_model_json",
]
