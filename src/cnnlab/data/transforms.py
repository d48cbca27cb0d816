"""Augmentation presets and the evaluation transform, on uint8 (C, H, W) tensors.

Input is what the pixel cache holds (cache.py): the image with its shorter side already at
`resize_size(spec)`. Every transform ends with ToDtype(float32, scale) + Normalize(spec.mean,
spec.std): the statistics come from the model's PreprocessSpec, never typed here.

  none    resize + center crop, as for evaluation
  light   RandomResizedCrop(scale 0.08-1) + horizontal flip
  strong  light + TrivialAugmentWide + ColorJitter(0.2, 0.2, 0.2) + RandomErasing(p=0.25)
  eval    Resize(shorter side = size / crop_pct) + CenterCrop(size); on a cached array the Resize
          is a no-op, so a cached sample equals `load_for_predict` on the file, pixel for pixel.

Random transforms draw from torch's global generator; datasets seed it per sample from
`sample_seed(seed, epoch, index)` so augmentation does not depend on the worker count.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from cnnlab.data import imaging
from cnnlab.errors import DataError, unknown
from cnnlab.models.spec import PreprocessSpec

PRESETS = ("none", "light", "strong")
_TENSOR_INTERPOLATION = {
    "nearest": v2.InterpolationMode.NEAREST,
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
}


def resize_size(spec: PreprocessSpec) -> int:
    """Shorter side before the center crop: 224 / 0.875 = 256 (floor, as timm does)."""
    _, h, w = spec.input_size
    return math.floor(max(h, w) / spec.crop_pct + 1e-6)  # 1e-6: 224 / 0.875 is 255.99999...


def _interpolation(spec: PreprocessSpec) -> v2.InterpolationMode:
    # Tensor kernels know nearest/bilinear/bicubic; the others (lanczos, box) fall back to
    # bilinear for training crops only; the cached resize itself uses the exact Pillow filter.
    return _TENSOR_INTERPOLATION.get(spec.interpolation, v2.InterpolationMode.BILINEAR)


def build_transform(spec: PreprocessSpec, preset: str = "light", train: bool = True) -> v2.Compose:
    """uint8 (C, H, W) tensor -> normalised float32 (C, H, W) per `spec` and the preset."""
    if preset not in PRESETS:
        raise unknown("augmentation preset", preset, PRESETS)
    c, h, w = spec.input_size
    interp = _interpolation(spec)
    tail: list[Any] = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)]
    if not train or preset == "none":
        resize = v2.Resize(resize_size(spec), interpolation=interp, antialias=True)
        return v2.Compose([resize, v2.CenterCrop((h, w)), *tail])
    ops: list[Any] = [
        v2.RandomResizedCrop((h, w), interpolation=interp, antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if preset == "strong":
        color = 0.2 if c == 3 else 0.0  # saturation means nothing on one channel
        ops += [
            v2.TrivialAugmentWide(interpolation=interp),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=color),
        ]
        tail.append(v2.RandomErasing(p=0.25, value=0))
    return v2.Compose(ops + tail)


@functools.lru_cache(maxsize=8)
def eval_transform(spec: PreprocessSpec) -> v2.Compose:
    return build_transform(spec, "none", train=False)


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 array -> (C, H, W) uint8 view, no copy.

    The view is channels-last in memory, which torchvision's uint8 resize kernels prefer.
    """
    return torch.from_numpy(arr).permute(2, 0, 1)


def load_for_predict(path: str | os.PathLike, spec: PreprocessSpec) -> torch.Tensor:
    """(1, C, H, W) float32: exactly the evaluation preprocessing of a cached sample."""
    try:
        arr = imaging.prepare(path, spec.input_size[0], resize_size(spec), spec.interpolation)
    except imaging.ImageError as e:
        raise DataError(
            f"cannot read {path}: {e.reason} ({e.detail}); pass a JPEG/PNG image"
        ) from e
    return eval_transform(spec)(to_tensor(arr)).unsqueeze(0)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Seed for one sample's augmentation: a pure function, so workers and resumes agree."""
    digest = hashlib.blake2b(f"{seed},{epoch},{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def measure_mean_std(
    images: Any, max_images: int = 2000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] over (H, W, C) uint8 images.

    `images` is a sequence of arrays, or a dataset with `raw(i)` (folder.ImageDataset). At most
    `max_images`, evenly spaced, are read: the statistics settle long before that.
    """
    get = images.raw if hasattr(images, "raw") else images.__getitem__
    n = len(images)
    if n == 0:
        raise DataError("cannot measure mean/std on an empty training split; add images")
    idx = np.unique(np.linspace(0, n - 1, min(n, max_images)).round().astype(np.int64))
    total = sq = None
    count = 0
    for i in idx:
        a = np.asarray(get(int(i)))
        px = a.reshape(-1, a.shape[-1]).astype(np.float64)  # (pixels, C)
        s, q = px.sum(0), np.square(px).sum(0)
        total, sq = (s, q) if total is None else (total + s, sq + q)
        count += px.shape[0]
    mean = total / count / 255.0
    var = np.maximum(sq / count / 255.0**2 - mean**2, 0.0)
    std = np.maximum(np.sqrt(var), 1 / 255)  # a constant channel must not divide by zero
    return _rounded(mean), _rounded(std)


def _rounded(v: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(x), 4) for x in v)
