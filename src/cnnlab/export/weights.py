"""Weights leave a run as `model.safetensors` + `model.json`: the tensors, and everything needed
to rebuild and feed the model (architecture and arguments, classes, preprocessing, versions,
sha256 of the tensor file). Loading checks the hash, the keys and the shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import RunError
from cnnlab.fsio import read_json, write_json
from cnnlab.models.base import CnnClassifier
from cnnlab.models.registry import create_model
from cnnlab.models.spec import PreprocessSpec

WEIGHTS, SIDECAR = "model.safetensors", "model.json"


def export_model(
    model: CnnClassifier,
    folder: Path,
    *,
    classes: list[str],
    preprocess: PreprocessSpec,
    build: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    from cnnlab.models.weights_io import save_safetensors, sha256_file

    folder = Path(folder)
    path = folder / WEIGHTS
    save_safetensors(model.state_dict(), path, {"format": "pt", "cnnlab_model": build["name"]})
    import cnnlab

    write_json(
        folder / SIDECAR,
        {
            "architecture": build,
            "classes": list(classes),
            "preprocess": preprocess.to_dict(),
            "variant": model.variant,
            "sha256": sha256_file(path),
            "cnnlab": cnnlab.__version__,
            "torch": torch.__version__,
            **(extra or {}),
        },
    )
    return path


def load_exported(folder: Path) -> tuple[CnnClassifier, dict[str, Any]]:
    """Rebuild a model from model.json and load model.safetensors strictly."""
    from cnnlab.models.weights_io import load_safetensors_checked, sha256_file

    folder = Path(folder)
    if not (folder / SIDECAR).is_file() or not (folder / WEIGHTS).is_file():
        raise RunError(
            f"{folder} has no exported model ({WEIGHTS} + {SIDECAR}); the run has not finished "
            f"an epoch yet: train it (or resume it) first"
        )
    meta = read_json(folder / SIDECAR)
    if meta.get("sha256") and sha256_file(folder / WEIGHTS) != meta["sha256"]:
        raise RunError(f"{folder / WEIGHTS} does not match the sha256 in {SIDECAR}; re-export it")
    build = dict(meta["architecture"])
    name = build.pop("name")
    model = create_model(name, **build)
    load_safetensors_checked(model, folder / WEIGHTS)
    model.preprocess = PreprocessSpec.from_dict(meta["preprocess"])
    return model.eval(), meta
