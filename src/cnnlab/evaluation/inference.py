"""Batched inference with exactly the model's evaluation preprocessing (done by the dataset)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def predict_logits(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    workers: int = 0,
    channels_last: bool = True,
    batch_transform: nn.Module | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C) float32, targets (N,)) over the dataset in order."""
    # Converted outside inference mode: weights converted inside it would become inference
    # tensors, and the model could no longer be used with autograd (Grad-CAM) afterwards.
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return _predict(model, dataset, batch_size, device, workers, channels_last, batch_transform)


@torch.inference_mode()
def _predict(model, dataset, batch_size, device, workers, channels_last, batch_transform):
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    logits, targets = [], []
    transform = (batch_transform or nn.Identity()).to(device)
    for x, y in loader:
        x = transform(x.to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits.append(model(x).float().cpu())
        targets.append(torch.as_tensor(y))
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
