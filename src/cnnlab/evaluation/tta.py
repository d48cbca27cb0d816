"""Test-time augmentation: each image's prediction averaged over views of it.

The views' softmax probabilities are averaged and returned as their log (fastai's `tta`
averages probabilities too), so argmax, softmax and cross-entropy read the result as they read
any logits. NumPy only: `cnnlab predict` with a model.onnx runs without torch.

    forward = with_tta(predictor.logits, Tta.FLIP)   # batch (N, C, H, W) -> (N, classes)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

import numpy as np


class Tta(StrEnum):
    """The views of each image whose predictions are averaged."""

    NONE = "none"
    FLIP = "flip"  # the image and its left-right mirror


def describe(tta: str | Tta | None) -> str:
    """How a report's images were predicted, in words, when not one view each ("" then)."""
    return "each averaged with its mirror image (--tta flip)" if tta == Tta.FLIP else ""


def parse_tta(name: str | Tta) -> Tta:
    from cnnlab.errors import ConfigError

    try:
        return Tta(name)
    except ValueError:
        choices = ", ".join(t.value for t in Tta)
        raise ConfigError(
            f"unknown test-time augmentation '{name}'; use one of {choices}"
        ) from None


def average_views(view_logits: Sequence[np.ndarray]) -> np.ndarray:
    """log of the mean over views of softmax(logits), per image: (V of (N, C)) -> (N, C)."""
    from cnnlab.deploy import softmax  # torch-free, like this module

    probs = [softmax(np.asarray(z, dtype=np.float64)) for z in view_logits]
    return np.log(np.mean(probs, axis=0)).astype(np.float32)


def with_tta(
    forward: Callable[[np.ndarray], np.ndarray], tta: Tta
) -> Callable[[np.ndarray], np.ndarray]:
    """`forward` (a NumPy batch -> logits) averaged over the views `tta` names."""
    if tta is Tta.NONE:
        return forward
    return lambda x: average_views([forward(x), forward(np.ascontiguousarray(x[..., ::-1]))])
