"""Augmentation presets and the evaluation transform, on uint8 (C, H, W) tensors.

Input is what the pixel cache holds (cache.py): the image with its shorter side already at
`resize_size(spec)`. Every transform ends with ToDtype(float32, scale) + Normalize(spec.mean,
spec.std) (`ToFloatNormalize`): the statistics come from the model's PreprocessSpec, never typed
here. With normalize=False the transform stops at uint8 and the caller applies ToFloatNormalize
to the batch, on the device: 4x fewer bytes through DataLoader workers' shared memory, which
with workers is what limits throughput on a cached dataset. The result is bitwise the same.

  none    resize + center crop, as for evaluation
  light   RandomResizedCrop(scale 0.08-1) + horizontal flip
  strong  light + TrivialAugmentWide + ColorJitter(0.2, 0.2, 0.2) + RandomErasing(p=0.25)
  eval    Resize(shorter side = size / crop_pct) + CenterCrop(size); on a cached array the Resize
          is a no-op, so a cached sample equals `load_for_predict` on the file, pixel for pixel.

`none`, `light` and eval run as one `CropNormalize` module that calls the v2 functional kernels
directly (one RNG draw, one fused normalise): the per-op dispatch of v2.Compose cost as much as
the pixel work on a cached 256-px image. `strong` composes the v2 transform classes.

Random transforms draw from torch's global generator; datasets seed it per sample from
`sample_seed(seed, epoch, index)` so augmentation does not depend on the worker count.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from cnnlab.data import imaging
from cnnlab.errors import DataError, unknown
from cnnlab.models.spec import PreprocessSpec
from cnnlab.seeds import derive_seed

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


class ToFloatNormalize(torch.nn.Module):
    """uint8 (..., C, H, W) -> float32 (x / 255 - mean) / std, contiguous; for one image or a
    batch (move it to the batch's device with .to(device))."""

    def __init__(self, spec: PreprocessSpec) -> None:
        super().__init__()
        c = spec.input_size[0]
        std = torch.tensor(spec.std, dtype=torch.float64).view(c, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float64).view(c, 1, 1)
        # (x / 255 - mean) / std == x * scale - shift: one multiply, one subtract, in place
        self.register_buffer("scale", (1.0 / (255.0 * std)).float(), persistent=False)
        self.register_buffer("shift", (mean / std).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to(torch.float32, memory_format=torch.contiguous_format)
        return y.mul_(self.scale).sub_(self.shift)


class CropNormalize(torch.nn.Module):
    """uint8 (C, H, W) -> normalised float32 (C, h, w), contiguous (uint8 if normalize=False).

    crop="center": Resize(shorter side = resize_size) + CenterCrop, the evaluation transform.
    crop="random": RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3) + horizontal flip (p=0.5),
    drawn as torchvision draws them, from torch's global generator.
    crop="none": the input is already cropped; only convert and normalise.
    """

    def __init__(self, spec: PreprocessSpec, crop: str = "center", normalize: bool = True) -> None:
        super().__init__()
        _, h, w = spec.input_size
        self.size, self.short, self.crop = [h, w], resize_size(spec), crop
        self.interpolation = _interpolation(spec)
        self.normalize = ToFloatNormalize(spec) if normalize else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop == "random":
            u = torch.rand(23).tolist()  # one draw: 10 (area, ratio) tries, top, left, flip
            top, left, ch, cw = rrc_box(x.shape[-2], x.shape[-1], u)
            crop = x[:, top : top + ch, left : left + cw].unsqueeze(0)
            # A dense channels-last crop takes torch's AVX uint8 resize: 2x faster than a view.
            crop = crop.contiguous(memory_format=torch.channels_last)[0]
            x = F.resize(crop, self.size, self.interpolation, antialias=True)
            if u[22] < 0.5:
                x = F.horizontal_flip(x)
        elif self.crop == "center":
            x = F.resize(x, [self.short], self.interpolation, antialias=True)  # no-op if cached
            x = F.center_crop(x, self.size)
        return x.contiguous() if self.normalize is None else self.normalize(x)


def rrc_box(
    height: int,
    width: int,
    u: Sequence[float],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random-resized crop from 22 uniforms, torchvision's algorithm."""
    area = height * width
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for k in range(10):
        target = area * (scale[0] + u[2 * k] * (scale[1] - scale[0]))
        aspect = math.exp(lo + u[2 * k + 1] * (hi - lo))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(u[20] * (height - h + 1)), int(u[21] * (width - w + 1)), h, w
    in_ratio = width / height  # fallback: the central crop closest to the allowed ratios
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def build_transform(
    spec: PreprocessSpec, preset: str = "light", train: bool = True, normalize: bool = True
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (C, H, W) tensor -> normalised float32 (C, H, W) per `spec` and the preset.

    normalize=False: uint8 (C, H, W) out; apply ToFloatNormalize(spec) to the batch later.
    """
    if preset not in PRESETS:
        raise unknown("augmentation preset", preset, PRESETS)
    if not train or preset == "none":
        return CropNormalize(spec, "center", normalize)
    if preset == "light":
        return CropNormalize(spec, "random", normalize)
    c, h, w = spec.input_size
    interp = _interpolation(spec)
    color = 0.2 if c == 3 else 0.0  # saturation means nothing on one channel
    return v2.Compose(
        [
            v2.RandomResizedCrop((h, w), interpolation=interp, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.TrivialAugmentWide(interpolation=interp),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=color),
            CropNormalize(spec, "none", normalize),
            # Erase to the mean colour: 0 once normalised (rounded to uint8 before that).
            v2.RandomErasing(p=0.25, value=0 if normalize else _mean_u8(spec)),
        ]
    )


def _mean_u8(spec: PreprocessSpec) -> list[int]:
    return [round(255 * m) for m in spec.mean]


@functools.lru_cache(maxsize=8)
def eval_transform(spec: PreprocessSpec) -> CropNormalize:
    return CropNormalize(spec, "center")


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
    return derive_seed(seed, epoch, index)


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
