"""Run an exported model with onnxruntime, NumPy and Pillow only: no torch.

    from cnnlab.deploy import OnnxClassifier

    model = OnnxClassifier("runs/photos/model.onnx")
    for p in model.predict(["bee.jpg", "ant.png"], topk=2):
        print(p.path, p.pred, f"{p.prob:.3f}")

Everything the model needs besides its weights travels in the ONNX file's `metadata_props`
(written by `cnnlab export`, read by `DeployMetadata.from_props`): the class names and the
evaluation preprocessing. `preprocess_image` reproduces cnnlab's evaluation tensor exactly:

  decode      cnnlab.data.imaging.decode, the very function training used (EXIF rotation,
              alpha on white, 16-bit to 8-bit, JPEG draft decoding at the resize size);
  resize      shorter side to `resize` (= size / crop_pct): torch's antialiased uint8 kernel
              (Pillow-SIMD's fixed-point separable filter, the weights rounded to int16 at the
              precision torch picks) ported to NumPy, bitwise equal to torchvision on x86 (AVX2);
              Pillow's own filter for lanczos/box/hamming, as cnnlab does;
  crop        torchvision's center_crop (anchor round((H - h) / 2), zero padding if smaller);
  normalise   x * float32(1 / (255 std)) - float32(mean / std), cnnlab's ToFloatNormalize.

Importing this module imports no torch (tests/export/test_deploy.py proves it with torch
blocked), so a server needs `pip install onnxruntime numpy pillow` and cnnlab without its
dependencies (`pip install --no-deps cnnlab`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data import imaging
from cnnlab.errors import DataError, RunError

FORMAT_VERSION = "1"  # bump when a key below changes meaning


@dataclass(frozen=True)
class DeployMetadata:
    """What an exported model says about itself; stored as strings (ONNX metadata_props)."""

    classes: tuple[str, ...]
    size: tuple[int, int]  # (H, W) of the model input, after the centre crop
    resize: int  # shorter side before the centre crop: floor(max(H, W) / crop_pct)
    mean: tuple[float, ...]  # per channel, on pixels scaled to [0, 1]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    channels: str = "RGB"  # "RGB" or "L": what decoding produces
    model: str = ""
    variant: str = ""
    cnnlab_version: str = ""

    @property
    def in_chans(self) -> int:
        return 1 if self.channels == "L" else 3

    def to_props(self) -> dict[str, str]:
        """Flat string pairs, readable in Netron and `onnx.load(...).metadata_props`."""
        return {
            "cnnlab": FORMAT_VERSION,
            "classes": json.dumps(list(self.classes)),
            "size": json.dumps(list(self.size)),
            "resize": str(self.resize),
            "crop": "center",
            "crop_pct": repr(self.crop_pct),
            "interpolation": self.interpolation,
            "channels": self.channels,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "layout": "NCHW float32",
            "model": self.model,
            "variant": self.variant,
            "cnnlab_version": self.cnnlab_version,
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str | os.PathLike) -> DeployMetadata:
        missing = [k for k in ("classes", "size", "resize", "mean", "std") if k not in props]
        if "cnnlab" not in props or missing:
            raise RunError(
                f"{source} carries no cnnlab preprocessing metadata (missing "
                f"{', '.join(missing) or 'cnnlab'}); export it with `cnnlab export RUN`"
            )
        if props["cnnlab"] != FORMAT_VERSION:
            raise RunError(
                f"{source} uses cnnlab export format {props['cnnlab']}, this cnnlab reads "
                f"{FORMAT_VERSION}; re-export it with this version"
            )
        return cls(
            classes=tuple(json.loads(props["classes"])),
            size=tuple(int(v) for v in json.loads(props["size"])),
            resize=int(props["resize"]),
            mean=tuple(float(v) for v in json.loads(props["mean"])),
            std=tuple(float(v) for v in json.loads(props["std"])),
            interpolation=props.get("interpolation", "bilinear"),
            crop_pct=float(props.get("crop_pct", "1.0")),
            channels=props.get("channels", "RGB"),
            model=props.get("model", ""),
            variant=props.get("variant", ""),
            cnnlab_version=props.get("cnnlab_version", ""),
        )


# ---------------------------------------------------------------------------------------------
# preprocessing: file -> (C, H, W) float32, exactly cnnlab's evaluation transform


def preprocess_image(path: str | os.PathLike, meta: DeployMetadata) -> np.ndarray:
    """(C, H, W) float32, normalised. Raises imaging.ImageError (with a reason) for a bad file."""
    im = imaging.decode(path, meta.in_chans, draft=meta.resize)
    a = resize_short(imaging.to_array(im), meta.resize, meta.interpolation)
    return normalize(center_crop(a, meta.size), meta.mean, meta.std)


def resize_short(a: np.ndarray, short: int, interpolation: str = "bilinear") -> np.ndarray:
    """(H, W, C) uint8 with the shorter side at `short`: imaging.resize_short without torch."""
    h, w = a.shape[:2]
    new_w, new_h = imaging.short_side_size(w, h, short)
    if (new_h, new_w) == (h, w):
        return a
    if interpolation not in imaging.TENSOR_INTERPOLATIONS:
        return imaging.resize_pillow(a, new_h, new_w, interpolation)
    if interpolation == "nearest":
        return a[_nearest_index(h, new_h)][:, _nearest_index(w, new_w)]
    # Separable, width first then height, each pass rounding to uint8 (as torch's AVX kernel).
    if new_w != w:
        a = _resample_axis(a, 1, new_w, interpolation)
    if new_h != h:
        a = _resample_axis(a, 0, new_h, interpolation)
    return a


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """torch's 'nearest' source index: floor(i * float32(in / out)), in float32 arithmetic."""
    i = np.arange(out_size)
    if out_size == 2 * in_size:
        return i >> 1
    scale = np.float32(in_size) / np.float32(out_size)  # a float32 division, as in C++
    src = np.floor(i.astype(np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic(x: float, a: float = -0.5) -> float:
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


_FILTERS: dict[str, tuple[Callable[[float], float], float]] = {
    "bilinear": (_bilinear, 1.0),  # (filter, support at scale 1)
    "bicubic": (_bicubic, 2.0),
}


def aa_weights(
    in_size: int, out_size: int, interpolation: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """(index (out, K), int weights (out, K), precision bits) of the antialiased filter.

    Pillow's coefficients (the filter stretched by the downscale factor, normalised per output
    pixel), then rounded to integers at the largest precision whose biggest weight still fits
    int16, as torch's uint8 AVX kernel does; unused taps have weight 0.
    """
    fn, support1 = _FILTERS[interpolation]
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    support = support1 * stretch
    taps = int(math.ceil(support)) * 2 + 1
    index = np.zeros((out_size, taps), np.int64)
    weights = np.zeros((out_size, taps), np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        n = min(int(center + support + 0.5), in_size) - lo
        w = [fn((j + lo - center + 0.5) / stretch) for j in range(n)]
        total = sum(w)
        index[i, :n] = np.arange(lo, lo + n)
        index[i, n:] = lo
        weights[i, :n] = [v / total for v in w] if total != 0 else w
    bits = 0
    while bits < 22 and int(0.5 + weights.max() * (1 << (bits + 1))) < (1 << 15):
        bits += 1
    scaled = weights * (1 << bits)
    fixed = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)).astype(np.int64)
    return index, fixed, bits


def _resample_axis(a: np.ndarray, axis: int, out_size: int, interpolation: str) -> np.ndarray:
    index, fixed, bits = aa_weights(a.shape[axis], out_size, interpolation)
    src = np.moveaxis(a, axis, 0)  # (in, other, C)
    acc = np.full((out_size, *src.shape[1:]), 1 << (bits - 1), np.int64)  # + 0.5 for rounding
    for k in range(index.shape[1]):  # one tap at a time: memory stays (out, other, C)
        acc += fixed[:, k, None, None] * src[index[:, k]]
    out = np.clip(acc >> bits, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


def center_crop(a: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(h, w, C) centre crop of (H, W, C), zero-padded first where smaller: torchvision's rule."""
    h, w = int(size[0]), int(size[1])
    H, W = a.shape[:2]
    if h > H or w > W:
        top, left = max(h - H, 0) // 2, max(w - W, 0) // 2
        bottom, right = max(h - H, 0) - top, max(w - W, 0) - left
        a = np.pad(a, ((top, bottom), (left, right), (0, 0)))
        H, W = a.shape[:2]
    top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
    return a[top : top + h, left : left + w]


def normalize(a: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(H, W, C) uint8 -> (C, H, W) float32 (x / 255 - mean) / std, rounded as cnnlab rounds."""
    m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    scale = (1.0 / (255.0 * s)).astype(np.float32)[:, None, None]
    shift = (m / s).astype(np.float32)[:, None, None]
    x = np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)
    x *= scale
    x -= shift
    return x


# ---------------------------------------------------------------------------------------------
# the runtime


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Prediction:
    path: str
    top: tuple[tuple[str, float], ...]  # (class, probability), most likely first

    @property
    def pred(self) -> str:
        return self.top[0][0]

    @property
    def prob(self) -> float:
        return self.top[0][1]


def top_predictions(
    paths: Sequence[str], logits: np.ndarray, classes: Sequence[str], topk: int
) -> list[Prediction]:
    """One Prediction per row of logits (N, K): the topk classes by softmax probability."""
    probs = softmax(logits.astype(np.float64))
    k = min(topk, len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        Prediction(str(p), tuple((classes[j], float(row[j])) for j in idx))
        for p, row, idx in zip(paths, probs, order, strict=True)
    ]


class OnnxClassifier:
    """An exported cnnlab model on ONNX Runtime (CPU unless `providers` says otherwise)."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise RunError(f"{self.path} does not exist; export a run with `cnnlab export RUN`")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except Exception as e:  # onnxruntime raises its own exception types for a bad file
            raise RunError(f"{self.path} is not a loadable ONNX model ({e}); re-export it") from e
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = DeployMetadata.from_props(props, self.path)
        self.input_name = self.session.get_inputs()[0].name

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    def preprocess(self, path: str | os.PathLike) -> np.ndarray:
        return preprocess_image(path, self.meta)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 -> (N, classes) float32 logits."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]

    def predict(self, paths: Iterable[str | os.PathLike], topk: int = 5) -> list[Prediction]:
        """Top-k per image, in one batch; a file that cannot be read is a DataError naming it."""
        paths = [str(p) for p in paths]
        batch = np.stack([_read(p, self.meta) for p in paths])
        return top_predictions(paths, self.logits(batch), self.meta.classes, topk)

    def __repr__(self) -> str:
        return f"OnnxClassifier({str(self.path)!r}, {len(self.meta.classes)} classes)"


def _read(path: str, meta: DeployMetadata) -> np.ndarray:
    try:
        return preprocess_image(path, meta)
    except imaging.ImageError as e:
        raise DataError(
            f"cannot read {path}: {e.reason} ({e.detail}); pass a JPEG/PNG image"
        ) from e


__all__ = [
    "DeployMetadata",
    "OnnxClassifier",
    "Prediction",
    "preprocess_image",
    "top_predictions",
    "softmax",
]
