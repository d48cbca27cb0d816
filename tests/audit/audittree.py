"""Photo-like test images, image trees with injected problems, and a random-feature stand-in
for the embedding model (tests stay offline and fast).

A module of its own, not conftest.py, so that test modules can import it by name.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from cnnlab.models.spec import PreprocessSpec

TINTS = {"red": (1.0, 0.45, 0.45), "blue": (0.45, 0.45, 1.0)}


def photo(seed: int, size: tuple[int, int] = (160, 120), tint: str | None = None) -> np.ndarray:
    """(h, w, 3) uint8 with hard-edged random blocks: sharp, and unlike any other seed."""
    w, h = size
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    a = np.array(Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST), dtype=np.float64)
    if tint is not None:
        a = a * np.array(TINTS[tint])
    return a.clip(0, 255).astype(np.uint8)


def save(path: Path, a: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        kw.setdefault("quality", 95)
    Image.fromarray(np.ascontiguousarray(a)).save(path, **kw)
    return path


def decoded(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


def jpeg_q(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def resized(a: np.ndarray, f: float) -> np.ndarray:
    h, w = a.shape[:2]
    im = Image.fromarray(a).resize((round(w * f), round(h * f)), Image.Resampling.BICUBIC)
    return np.array(im)


def center_crop(a: np.ndarray, keep: float) -> np.ndarray:
    h, w = a.shape[:2]
    dy, dx = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    return a[dy : h - dy, dx : w - dx]


def placeholder(size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """An "image not found" card: white, with a grey frame and a dark bar of "text"."""
    w, h = size
    a = np.full((h, w, 3), 255, dtype=np.uint8)
    a[:3], a[-3:], a[:, :3], a[:, -3:] = 160, 160, 160, 160
    a[h // 2 - 3 : h // 2 + 3, w // 5 : 4 * w // 5] = 30
    return a


def make_tree(root: Path, per_class: int = 12, val_per_class: int = 4) -> Path:
    """split_dirs tree: train/{red,blue} and val/{red,blue} of tinted photos, all distinct."""
    seed = 100
    for split, n in (("train", per_class), ("val", val_per_class)):
        for cls in TINTS:
            for k in range(n):
                seed += 1
                save(root / split / cls / f"{cls}_{k:02d}.jpg", photo(seed, tint=cls))
    return root


def inject(root: Path) -> dict[str, tuple[str, ...]]:
    """Add one of every problem to a `make_tree` tree; returns {what: relative paths}."""
    t: dict[str, tuple[str, ...]] = {}

    def copy_to(src: str, dst: str, a: np.ndarray, **kw) -> None:
        save(root / dst, a, **kw)
        t[Path(dst).stem] = (src, dst)

    shutil.copyfile(root / "train/red/red_00.jpg", root / "val/red/copy_exact.jpg")
    t["copy_exact"] = ("train/red/red_00.jpg", "val/red/copy_exact.jpg")
    # same decoded pixels, other bytes: a lossless PNG of the JPEG's pixels
    copy_to(
        "train/blue/blue_00.jpg", "val/blue/copy_png.png", decoded(root / "train/blue/blue_00.jpg")
    )
    copy_to(
        "train/red/red_01.jpg",
        "val/red/copy_jpeg.jpg",
        jpeg_q(decoded(root / "train/red/red_01.jpg"), 60),
    )
    copy_to(
        "train/red/red_02.jpg",
        "val/red/copy_small.jpg",
        resized(decoded(root / "train/red/red_02.jpg"), 0.7),
    )
    copy_to(
        "train/blue/blue_01.jpg",
        "val/blue/copy_crop.jpg",
        center_crop(decoded(root / "train/blue/blue_01.jpg"), 0.9),
    )
    copy_to(
        "train/blue/blue_02.jpg",
        "val/blue/copy_flip.jpg",
        decoded(root / "train/blue/blue_02.jpg")[:, ::-1],
    )
    copy_to(
        "train/red/red_03.jpg",
        "train/red/dup_same_split.png",
        decoded(root / "train/red/red_03.jpg"),
    )
    save(root / "train/red/dark.jpg", photo(7, tint="red") // 14)
    # radius 3: far softer than the rest, yet with the contrast (grey std >= 0.05) that
    # sharpness needs to be judged at all
    blur = Image.fromarray(photo(8, tint="blue")).filter(ImageFilter.GaussianBlur(3))
    save(root / "train/blue/blurry.jpg", np.array(blur))
    save(root / "train/red/tiny.png", photo(9, size=(20, 20), tint="red"))
    save(root / "train/blue/flat.png", np.full((120, 160, 3), (40, 40, 200), dtype=np.uint8))
    (root / "train/red/truncated.jpg").write_bytes(
        (root / "train/red/red_04.jpg").read_bytes()[:200]
    )
    save(root / "train/red/missing.png", placeholder())
    save(root / "train/blue/missing.png", placeholder())
    save(root / "train/blue/flipped_label.jpg", photo(11, tint="red"))
    t["dark"] = ("train/red/dark.jpg",)
    t["blurry"] = ("train/blue/blurry.jpg",)
    t["tiny"] = ("train/red/tiny.png",)
    t["flat"] = ("train/blue/flat.png",)
    t["truncated"] = ("train/red/truncated.jpg",)
    t["placeholder"] = ("train/blue/missing.png", "train/red/missing.png")
    t["flipped_label"] = ("train/blue/flipped_label.jpg",)
    return t  # fmt: skip


class RandomFeatures:
    """Stand-in for the pretrained backbone: 4x4 average colour grid -> fixed random ReLU features.

    Colour and coarse layout survive, so tinted classes are linearly separable and a copy lands
    next to its original, as with real embeddings; `calls` counts embedded images.
    """

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(3 * 4 * 4, dim, generator=g)
        self.key = f"random-features-{dim}-{seed}"
        # 128 px: the cache size it implies must keep the images' detail (sharpness checks)
        self.preprocess = PreprocessSpec(
            input_size=(3, 128, 128), mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0
        )
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += len(x)
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)  # (N, 48)
        return torch.relu(pooled @ self.w)
