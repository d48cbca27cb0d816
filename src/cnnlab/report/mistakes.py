"""The most confident mistakes on the evaluated split, each with a Grad-CAM overlay.

`predict_split` is the one place the report touches the data layer: it rebuilds the run's
evaluation data the way `cnnlab evaluate` does (same config, same split manifest, the model's
own preprocessing) and predicts every image. Everything after it works on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.errors import DataError
from cnnlab.explain.gradcam import CamMethod, cam, find_target_layer
from cnnlab.explain.overlay import blend, png_bytes, resize_pair, to_display

THUMB = 128  # px, the longer side of a gallery picture


@dataclass
class SplitPredictions:
    split: str
    probs: np.ndarray  # (N, C) softmax of the logits
    targets: np.ndarray  # (N,) true class indices
    dataset: Any  # items (x, y) in the order of `probs`
    batch_transform: nn.Module | None  # what turns an item into model input (uint8 data)

    @property
    def accuracy(self) -> float:
        return float((self.probs.argmax(1) == self.targets).mean()) if len(self.targets) else 0.0

    def input(self, i: int) -> torch.Tensor:
        """(C, H, W): sample i exactly as the model received it."""
        x = torch.as_tensor(self.dataset[i][0])
        return x if self.batch_transform is None else self.batch_transform(x.unsqueeze(0))[0]

    def source(self, i: int) -> str:
        paths = getattr(self.dataset, "paths", None)
        return str(paths[i]) if paths is not None else f"{self.split} image #{i}"


def predict_split(
    run_dir: Path, model: nn.Module, split: str = "test", *, bundle: Any = None
) -> SplitPredictions:
    """Predict every image of the run's `split` (test or val) with `model`; `bundle` is the
    run's data when the caller has it (the end of training), else it is rebuilt exactly as
    `cnnlab evaluate` rebuilds it."""
    from cnnlab import config as C
    from cnnlab.evaluation.evaluate import run_bundle
    from cnnlab.evaluation.inference import predict_logits, softmax

    if bundle is None:
        cfg = C.load_yaml(Path(run_dir) / "config.yaml")
        bundle = run_bundle(cfg, Path(run_dir), model.preprocess)
    dataset = bundle.test if split == "test" else bundle.val
    if dataset is None:
        raise DataError(f"the run's data has no {split} split; evaluate the run on another split")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    logits, targets = predict_logits(
        model, dataset, device=device, batch_transform=bundle.batch_transform
    )
    transform = bundle.batch_transform
    return SplitPredictions(
        split, softmax(logits), targets, dataset, None if transform is None else transform.cpu()
    )


def confident_mistakes(probs: np.ndarray, targets: np.ndarray, n: int) -> list[int]:
    """Indices of wrongly predicted samples, most confident first (ties: lower index first)."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != targets)
    conf = probs[wrong, pred[wrong]]
    return wrong[np.lexsort((wrong, -conf))][:n].tolist()


@dataclass(frozen=True)
class Mistake:
    index: int  # position in the split
    source: str  # file path, or "test image #i" for built-in data
    true: str
    predicted: str
    prob: float  # probability of the predicted class
    true_prob: float
    image_png: bytes  # the input as the model saw it
    cam_png: bytes  # the same with the Grad-CAM heatmap of the predicted class over it


@dataclass(frozen=True)
class Gallery:
    items: list[Mistake]
    note: str  # what the gallery shows, or why it is empty


def mistake_gallery(
    model: nn.Module,
    preds: SplitPredictions,
    classes: list[str],
    n: int,
    method: CamMethod = CamMethod.GRADCAM,
) -> list[Mistake]:
    idx = confident_mistakes(preds.probs, preds.targets, n)
    if not idx:
        return []
    spec = model.preprocess
    xs = torch.stack([preds.input(i) for i in idx])
    predicted = preds.probs[idx].argmax(1).tolist()
    layer = find_target_layer(model, spec.input_size)
    heats = cam(model, xs, predicted, method, layer=layer)
    out = []
    for i, x, p, heat in zip(idx, xs, predicted, heats, strict=True):
        image, big_heat = resize_pair(to_display(x, spec), heat, THUMB)
        t = int(preds.targets[i])
        out.append(
            Mistake(
                index=i,
                source=preds.source(i),
                true=classes[t],
                predicted=classes[p],
                prob=float(preds.probs[i, p]),
                true_prob=float(preds.probs[i, t]),
                image_png=png_bytes(image),
                cam_png=png_bytes(blend(image, big_heat)),
            )  # fmt: skip
        )
    return out
