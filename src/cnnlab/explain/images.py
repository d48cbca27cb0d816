"""`explain(RUN, images)`: Grad-CAM overlays for image files, with the run's own preprocessing.

    results = explain("runs/demo", ["shoe.png"], method="gradcam++", class_name="Sandal")
    print(results[0].output)   # runs/demo/explain/shoe.gradcam++.png

Each image goes through exactly what `cnnlab predict` does (model.json's PreprocessSpec, via
`load_for_predict`); the heatmap is for `class_name`, or for the predicted class by default.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import unknown
from cnnlab.explain.gradcam import CamMethod, cam, cam_method, find_target_layer
from cnnlab.explain.overlay import save_overlay_png, to_display


@dataclass(frozen=True)
class ExplainResult:
    image: Path  # the input file
    output: Path  # the overlay PNG
    method: CamMethod
    layer: str  # where the map was taken, e.g. "backbone.layer4"
    predicted: str
    predicted_prob: float
    target: str  # the class the heatmap explains
    target_prob: float
    heatmap: np.ndarray = field(repr=False, compare=False)  # (H, W) in [0, 1], model input size


def explain(
    run_dir: str | os.PathLike,
    images: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    method: str | CamMethod = CamMethod.GRADCAM,
    class_name: str | None = None,
    out_dir: str | os.PathLike | None = None,
    runs_dir: str | os.PathLike | None = None,
) -> list[ExplainResult]:
    """Write `<out_dir>/<image stem>.<method>.png` per image (default out_dir: RUN/explain)."""
    from cnnlab import runs
    from cnnlab.data.transforms import load_for_predict
    from cnnlab.errors import ConfigError
    from cnnlab.evaluation.inference import softmax
    from cnnlab.export import load_exported

    method = cam_method(method)
    paths = [Path(images)] if isinstance(images, (str, os.PathLike)) else [Path(p) for p in images]
    if not paths:
        raise ConfigError("no images to explain; pass one or more image files")
    run = runs.resolve_run(run_dir, runs_dir)
    model, meta = load_exported(run)
    classes: list[str] = meta["classes"]
    if class_name is not None and class_name not in classes:
        raise unknown("class", class_name, classes, f"the run's classes are: {', '.join(classes)}")
    spec = model.preprocess
    layer = find_target_layer(model, spec.input_size)
    out = Path(out_dir) if out_dir is not None else run / "explain"
    results = []
    for path, stem in zip(paths, unique_stems(paths), strict=True):
        x = load_for_predict(path, spec)  # (1, C, H, W), the predict path exactly
        with torch.no_grad():
            probs = softmax(model(x).float().numpy())[0]
        pred = int(probs.argmax())
        target = pred if class_name is None else classes.index(class_name)
        heat = cam(model, x[0], target, method, layer=layer)
        title = caption(
            method, classes[pred], float(probs[pred]), classes[target], float(probs[target])
        )
        png = save_overlay_png(
            out / f"{stem}.{method.value}.png", to_display(x[0], spec), heat, title
        )
        results.append(
            ExplainResult(
                image=path,
                output=png,
                method=method,
                layer=layer.name,
                predicted=classes[pred],
                predicted_prob=float(probs[pred]),
                target=classes[target],
                target_prob=float(probs[target]),
                heatmap=heat,
            )  # fmt: skip
        )
    return results


def caption(method: CamMethod, predicted: str, p_pred: float, target: str, p_target: float) -> str:
    head = f"predicted {predicted} ({p_pred:.1%})"
    if target == predicted:
        return f"{head} · {method.label} for it"
    return f"{head} · {method.label} for {target} ({p_target:.1%})"


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems, with -2, -3... added where two inputs share one (a/x.png, b/x.png)."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        out.append(p.stem if n == 1 else f"{p.stem}-{n}")
    return out
