"""Weights leave a run as `model.safetensors` + `model.json`: the tensors, and everything needed
to rebuild and feed the model (architecture and arguments, classes, preprocessing, versions,
sha256 of the tensor file). Loading checks the hash, the keys and the shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError, RunError, message_of
from cnnlab.fsio import read_json, write_json
from cnnlab.models import create_model
from cnnlab.models.base import CnnClassifier
from cnnlab.models.spec import PreprocessSpec

WEIGHTS, SIDECAR = "model.safetensors", "model.json"
MAX_SIDE = 4096


def export_model(
    model: CnnClassifier,
    folder: Path,
    *,
    classes: list[str],
    preprocess: PreprocessSpec,
    build: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """`build` is the registry arguments that rebuild the model; None for a user's own module
    (its weights load back into an instance with `load_weights`)."""
    from cnnlab.models.weights_io import save_safetensors, sha256_file

    folder = Path(folder)
    path = folder / WEIGHTS
    name = build["name"] if build else type(model).__name__
    save_safetensors(model.state_dict(), path, {"format": "pt", "cnnlab_model": name})
    import cnnlab

    write_json(
        folder / SIDECAR,
        {
            "architecture": build,
            "classes": list(classes),
            "preprocess": preprocess.to_dict(),
            "variant": getattr(model, "variant", ""),
            "sha256": sha256_file(path),
            "cnnlab": cnnlab.__version__,
            "torch": torch.__version__,
            **(extra or {}),
        },
    )
    return path


def load_exported(folder: Path) -> tuple[CnnClassifier, dict[str, Any]]:
    """Rebuild a model from model.json and load model.safetensors strictly. model.json is
    checked against the tensors' shapes before anything is built, so a damaged file is a clear
    error and never a giant allocation."""
    from cnnlab.models.weights_io import load_safetensors_checked

    folder = Path(folder)
    meta = read_model_json(folder)
    build = dict(meta["architecture"] or {})
    if not build:
        raise RunError(
            f"{folder / SIDECAR} describes a user's own model; load it with "
            f"`cnnlab.load_run({str(folder)!r}, model=YourModel())`"
        )
    name = build.pop("name")
    try:
        model = create_model(name, **build)
        load_safetensors_checked(model, folder / WEIGHTS)
    except CnnlabError as e:  # an unknown model, or one whose tensors are not these
        raise RunError(
            f"{folder / SIDECAR} does not describe the weights in {WEIGHTS} ({message_of(e)}); "
            f"restore it or re-export the run"
        ) from None
    model.preprocess = PreprocessSpec.from_dict(meta["preprocess"])
    return model.eval(), meta


def load_weights(model: Any, folder: Path) -> Any:
    """Load a run's exported weights into `model` (an instance of the exported architecture)."""
    from cnnlab.models.weights_io import load_safetensors_checked

    meta = read_model_json(folder)
    load_safetensors_checked(model, Path(folder) / WEIGHTS)
    model.preprocess = PreprocessSpec.from_dict(meta["preprocess"])
    return model.eval()


def read_model_json(folder: Path) -> dict[str, Any]:
    """model.json, validated: classes, preprocessing and architecture agree with each other and
    with the shapes in model.safetensors' header; the sha256 matches."""
    from cnnlab.models.weights_io import read_safetensors_header, sha256_file

    folder = Path(folder)
    sidecar, weights = folder / SIDECAR, folder / WEIGHTS
    if not sidecar.is_file() or not weights.is_file():
        if (folder / "best.ckpt").is_file():
            raise RunError(
                f"{folder} has best.ckpt but no exported model ({WEIGHTS} + {SIDECAR}); "
                f"re-export it with `cnnlab export {folder} --format safetensors`"
            )
        raise RunError(
            f"{folder} has no exported model ({WEIGHTS} + {SIDECAR}): the run has not finished "
            f"an epoch yet; train it (or resume it) first"
        )
    try:
        meta = read_json(sidecar)
    except (OSError, ValueError):
        raise RunError(f"{sidecar} is not valid JSON; the run folder is damaged") from None
    problem = _model_json_problem(meta, read_safetensors_header(weights))
    if problem:
        raise RunError(f"{sidecar} is damaged: {problem}; restore it or re-export the run")
    if meta.get("sha256") and sha256_file(weights) != meta["sha256"]:
        raise RunError(f"{weights} does not match the sha256 in {SIDECAR}; re-export it")
    return meta


def _model_json_problem(meta: Any, header: dict[str, Any]) -> str | None:
    if not isinstance(meta, dict):
        return "not a JSON object"
    classes = meta.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        return "'classes' must be a non-empty list of class names"
    try:
        spec = PreprocessSpec.from_dict(meta.get("preprocess") or {})
    except (KeyError, TypeError, ValueError):
        return "'preprocess' is missing or malformed"
    c, h, w = spec.input_size
    if c not in (1, 3) or not (8 <= h <= MAX_SIDE and 8 <= w <= MAX_SIDE):
        return f"preprocess input_size {spec.input_size} is impossible"
    head = [v["shape"] for k, v in header.items() if k.startswith("head.") and k.endswith("weight")]
    if head and head[-1][0] != len(classes):
        return f"it lists {len(classes)} classes but the weights have {head[-1][0]} outputs"
    arch = meta.get("architecture")
    if arch is None:
        return None
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        return "'architecture' must name the model"
    if arch.get("num_classes") != len(classes):
        return f"architecture num_classes {arch.get('num_classes')} != {len(classes)} classes"
    if arch.get("in_chans") != c or arch.get("input_size") not in (h, None):
        return f"architecture {arch.get('in_chans')}x{arch.get('input_size')} != {c}x{h}"
    return None
