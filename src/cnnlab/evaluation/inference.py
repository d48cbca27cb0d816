"""Batched inference with exactly the model's evaluation preprocessing (done by the dataset).

Evaluation and prediction run on an inference copy of the model (models/fold.py): BatchNorm
folded into the convolutions, on a CPU each convolution fused with its activation
(models/fuse.py), eval mode, no gradients, `torch.inference_mode`, channels_last.
The copy is checked against the model on the first batch; the caller's model is not changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cnnlab.deploy import softmax as softmax  # one softmax for all: deploy's, torch-free
from cnnlab.evaluation.tta import Tta, average_views


def inference_model(
    model: nn.Module, example: torch.Tensor, *, channels_last: bool = True
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function batch -> logits computing what `model.eval()` computes, faster."""
    from cnnlab.models.fold import fast_eval_copy, memory_format

    fmt = memory_format(channels_last)
    fast = fast_eval_copy(model, example[:1], memory_format=fmt)  # one image checks the copy

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fast(x.contiguous(memory_format=fmt))

    return run


# Images per forward pass at 224x224: larger batches only add cache misses on a CPU (Lite0 at
# 224 px: 64 -> 76.8 img/s, 32 -> 75.9, 256 -> 50.1; benchmarks/RESULTS.md). Scaled by area, so
# 28x28 images still go 4,096 at a time.
PIXELS_PER_PASS = 64 * 224 * 224


def _logits(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    device: str,
    channels_last: bool,
    tta: Tta = Tta.NONE,
) -> torch.Tensor:
    model = model.to(device)
    fast, out = None, []
    for x in batches:
        if fast is None:
            fast = inference_model(model, x, channels_last=channels_last)
        step = max(1, PIXELS_PER_PASS // (x.shape[-1] * x.shape[-2]))
        for part in x.split(step):
            if tta is Tta.FLIP:  # the views are mirrored on the device, averaged in tta.py
                views = [fast(v).float().cpu().numpy() for v in (part, part.flip(-1))]
                out.append(torch.from_numpy(average_views(views)))
            else:
                out.append(fast(part).float().cpu())
    return torch.cat(out)


def predict_logits(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    workers: int = 0,
    channels_last: bool = True,
    batch_transform: nn.Module | None = None,
    tta: Tta = Tta.NONE,
) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C) float32, targets (N,)) over the dataset in order; with `tta`, the
    log of the probabilities averaged over its views (evaluation/tta.py)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    transform = (batch_transform or nn.Identity()).to(device)
    targets: list[torch.Tensor] = []

    def batches():
        with torch.no_grad():
            for x, y in loader:
                targets.append(torch.as_tensor(y))
                yield transform(x.to(device))

    logits = _logits(model, batches(), device, channels_last, tta)
    return logits.numpy(), torch.cat(targets).numpy()


def predict_tensor(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    channels_last: bool = True,
    tta: Tta = Tta.NONE,
) -> np.ndarray:
    """Logits (N, C) float32 for preprocessed images (N, C, H, W), in batches."""
    parts = (images[i : i + batch_size].to(device) for i in range(0, len(images), batch_size))
    return _logits(model, parts, device, channels_last, tta).numpy()
