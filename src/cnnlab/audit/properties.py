"""Per-image properties (brightness, sharpness, information, colour, size, mode, EXIF) and the
rules that turn them into findings.

Pixel statistics come from the cached pixels (shorter side at the cache size, so sharpness is
comparable between images); size, mode and EXIF orientation come from the file header, which
Pillow reads without decoding a pixel.

Each rule flags files against a threshold in `Thresholds`; one finding per code lists every
flagged file, worst first, with its value. A property that holds for most of the data set (all
of Fashion-MNIST is 28x28 grayscale) is reported once as information about the data set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.audit.findings import Code, Finding, Severity
from cnnlab.audit.hashing import at_most
from cnnlab.data import imaging

# columns of the (N, len(STATS)) float array `pixel_stats` rows fill
STATS = ("p05", "mean", "p95", "sharpness", "entropy", "flat", "gray_rgb")
EXIF_ORIENTATION = 0x0112
COMMON_MODES = frozenset({"RGB", "L"})
# Sharpness is measured at this shorter side, whatever the cache size: the cache enlarges small
# files, and an enlarged image is soft at the pixel level without being out of focus.
SHARPNESS_SIDE = 128
MIN_CONTRAST = 0.05  # grey-level std below which focus cannot be judged (1% of ants/bees photos)
MODE_NAMES = {
    "CMYK": "CMYK (converted to RGB)",
    "P": "palette (converted to RGB)",
    "PA": "palette with alpha (composited on white)",
    "RGBA": "RGBA (alpha composited on white)",
    "LA": "grayscale with alpha (composited on white)",
    "I;16": "16-bit (scaled to 8-bit)",
    "I;16B": "16-bit (scaled to 8-bit)",
    "I;16L": "16-bit (scaled to 8-bit)",
    "I": "32-bit integer (scaled to 8-bit)",
    "F": "32-bit float (scaled to 8-bit)",
    "1": "1-bit (converted to RGB)",
}


@dataclass(frozen=True)
class Thresholds:
    """When a property becomes a finding; every value is shown in the finding's evidence."""

    dark_p95: float = 0.20  # 95% of the pixels darker than 20% grey: an under-exposed image
    light_p05: float = 0.90  # 95% of the pixels brighter than 90% grey: washed out
    # sharpness (std of the Laplacian) under this fraction of the data set's median: far softer
    # than the rest; relative, because "sharp" depends on the data (X-rays vs street photos).
    # On ants/bees: a Gaussian blur of radius 4 px flags 100%, radius 2 30%; 1% of the
    # unblurred photos are below 0.34 of the median.
    blur_ratio: float = 0.25
    low_entropy_bits: float = 2.0  # grey-level entropy; a photo has 6-7.5 bits, a flat card ~0-1
    aspect_ratio: float = 3.0  # longer side over shorter: the centre crop keeps a third or less
    tiny_side: int = 32  # shorter side in pixels: below this a photo carries little
    odd_size_ratio: float = 0.25  # shorter side under a quarter of the data set's median
    gray_rgb_max_diff: float = 3.0  # 99th percentile of |R-G|, |G-B| (JPEG chroma noise ~1-2)
    most: float = 0.5  # a property of this share of the images is the data set's, not a file's


def pixel_stats(a: np.ndarray, g: Image.Image) -> np.ndarray:
    """One row of STATS for an (H, W, C) uint8 image `a` and its grayscale `g`."""
    x = np.asarray(g)
    hist = np.bincount(x.ravel(), minlength=256).astype(np.float64)
    n = hist.sum()
    cdf = np.cumsum(hist) / n
    p05 = np.searchsorted(cdf, 0.05) / 255.0
    p95 = np.searchsorted(cdf, 0.95) / 255.0
    mean = float((hist * np.arange(256)).sum() / n / 255.0)
    p = hist[hist > 0] / n
    entropy = float(-(p * np.log2(p)).sum())
    flat = float(hist.max() / n)  # share of the most common grey level
    sharp = np.nan  # undefined without contrast: nothing to be sharp or blurry
    f = np.asarray(at_most(g, SHARPNESS_SIDE), dtype=np.float32) / 255.0
    # Not divided by the contrast: after heavy blur, uint8 steps and JPEG noise are all the
    # variation left, and a ratio would call such an image sharp. Low-contrast images (dark,
    # washed out, uniform: their own findings) are left out instead.
    if min(f.shape) >= 3 and float(f.std()) >= MIN_CONTRAST:
        lap = 4 * f[1:-1, 1:-1] - f[:-2, 1:-1] - f[2:, 1:-1] - f[1:-1, :-2] - f[1:-1, 2:]
        sharp = float(lap.std())
    gray_rgb = 0.0
    if a.shape[2] >= 3:  # on a 1-in-16 pixel sample: enough for a 99th percentile
        s = a[::4, ::4, :3].astype(np.int16)
        d = np.maximum(np.abs(s[..., 0] - s[..., 1]), np.abs(s[..., 1] - s[..., 2]))
        gray_rgb = float(np.percentile(d, 99))
    return np.array([p05, mean, p95, sharp, entropy, flat, gray_rgb])


@dataclass(frozen=True)
class Header:
    """What the file says about itself, before any decoding."""

    format: str
    mode: str
    width: int  # as displayed, i.e. after the EXIF rotation
    height: int
    orientation: int  # EXIF orientation tag; 1 = upright


def read_header(path: str | os.PathLike) -> Header | None:
    """The header of an image file, or None if Pillow cannot parse it (the scan skipped it)."""
    try:
        with Image.open(path, formats=imaging.ALLOWED_FORMATS) as im:
            orientation = 1
            try:
                orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
            except Exception:  # a broken EXIF block: the loader ignores it too
                orientation = 1
            w, h = im.size
            if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: displayed sides swap
                w, h = h, w
            return Header(im.format or "", im.mode, w, h, orientation)
    except Exception:
        return None


def property_findings(
    stats: np.ndarray,
    headers: list[Header | None] | None,
    rels: list[str],
    splits: list[str],
    t: Thresholds,
) -> list[Finding]:
    """Findings from (N, len(STATS)) pixel statistics and, for files, their headers."""
    col = {name: stats[:, k] for k, name in enumerate(STATS)}
    make = _Maker(rels, splits, t.most)
    out = [
        make(Code.DARK, col["p95"], col["p95"] < t.dark_p95, low=True,
             what="dark", unit="95th-percentile brightness", threshold=f"< {t.dark_p95}",
             fix="look at them: delete failed exposures; keep them if such images are expected "
                 "in use, and train with --augment strong (brightness jitter)"),
        make(Code.LIGHT, col["p05"], col["p05"] > t.light_p05, low=False,
             what="over-exposed (washed out)", unit="5th-percentile brightness",
             threshold=f"> {t.light_p05}",
             fix="look at them: delete failed exposures or blank scans"),
        make(Code.LOW_INFORMATION, col["entropy"], col["entropy"] < t.low_entropy_bits,
             low=True, what="nearly uniform", unit="grey-level entropy (bits)",
             threshold=f"< {t.low_entropy_bits}",
             fix="look at them: blank frames and solid colours teach the model nothing; "
                 "delete them"),
    ]  # fmt: skip
    sharp = col["sharpness"]
    known = np.isfinite(sharp)
    ref = float(np.median(sharp[known])) if known.any() else 0.0
    out.append(
        make(Code.BLURRY, sharp, known & (sharp < t.blur_ratio * ref), low=True,
             what="blurry", unit="sharpness (std of the Laplacian at 128 px)",
             threshold=f"< {t.blur_ratio} x data set median {ref:.4f} = {t.blur_ratio * ref:.4f}",
             fix="look at them: delete out-of-focus shots, or keep them if the model will see "
                 "such images in use")
    )  # fmt: skip
    if stats.shape[0] and headers is not None:
        gray = col["gray_rgb"]
        is_rgb = np.array([h is not None and h.mode == "RGB" for h in headers])
        out.append(
            make(Code.GRAYSCALE_AS_RGB, gray, is_rgb & (gray <= t.gray_rgb_max_diff), low=True,
                 what="grayscale stored as RGB", unit="99th percentile of |R-G|, |G-B|",
                 threshold=f"<= {t.gray_rgb_max_diff}",
                 fix="nothing to do: they are read as RGB with three equal channels")
        )  # fmt: skip
        out += header_findings(headers, rels, splits, t)
    return [f for f in out if f is not None]


def header_findings(
    headers: list[Header | None], rels: list[str], splits: list[str], t: Thresholds
) -> list[Finding | None]:
    make = _Maker(rels, splits, t.most)
    known = [h for h in headers if h is not None]
    w = np.array([h.width if h else 0 for h in headers], dtype=np.float64)
    ht = np.array([h.height if h else 0 for h in headers], dtype=np.float64)
    ok = np.array([h is not None for h in headers])
    short = np.minimum(w, ht)
    aspect = np.maximum(w, ht) / np.maximum(short, 1)
    median_short = float(np.median(short[ok])) if known else 0.0
    rotated = np.array([h is not None and h.orientation != 1 for h in headers])
    unusual = np.array([h is not None and h.mode not in COMMON_MODES for h in headers])
    return [
        make(Code.TINY, short, ok & (short < t.tiny_side), low=True,
             what="tiny", unit="shorter side (px)", threshold=f"< {t.tiny_side}",
             fix="replace them with larger originals or delete them: they are upsampled to "
                 "the model's input"),
        make(Code.ODD_SIZE, short, ok & (short < t.odd_size_ratio * median_short), low=True,
             what="much smaller than the rest", unit="shorter side (px)",
             threshold=f"< {t.odd_size_ratio} x median {median_short:.0f} px",
             fix="replace them with larger originals: they come out blurrier than the others "
                 "after resizing"),
        make(Code.ODD_ASPECT_RATIO, aspect, ok & (aspect > t.aspect_ratio), low=False,
             what="elongated", unit="longer / shorter side", threshold=f"> {t.aspect_ratio}",
             fix="the centre crop keeps only the middle: crop them to the object by hand"),
        make(Code.UNUSUAL_MODE, unusual.astype(float), unusual, low=False,
             what="in an unusual colour mode", unit="mode", threshold="not RGB or L",
             values=[MODE_NAMES.get(h.mode, h.mode) if h else "" for h in headers],
             fix="nothing to do: cnnlab converts them; other tools may not (re-save as RGB "
                 "JPEG/PNG to be safe)"),
        make(Code.EXIF_ROTATED, rotated.astype(float), rotated, low=False,
             what="rotated by their EXIF tag", unit="EXIF orientation", threshold="!= 1",
             values=[h.orientation if h else 1 for h in headers],
             fix="nothing to do: cnnlab applies the rotation; tools that ignore EXIF see "
                 "them sideways"),
    ]  # fmt: skip


class _Maker:
    """Builds one finding per code from a value per image and a flag per image."""

    def __init__(self, rels: list[str], splits: list[str], most: float) -> None:
        self.rels, self.splits, self.most = rels, splits, most

    def __call__(
        self,
        code: Code,
        value: np.ndarray,
        flag: np.ndarray,
        *,
        low: bool,
        what: str,
        unit: str,
        threshold: str,
        fix: str,
        values: list | None = None,
    ) -> Finding | None:
        idx = np.flatnonzero(flag)
        if len(idx) == 0:
            return None
        order = idx[np.argsort(value[idx], kind="stable")]
        if not low:
            order = order[::-1]
        shown: Callable[[int], object] = (
            (lambda i: values[i]) if values is not None else (lambda i: round(float(value[i]), 4))
        )
        share = len(idx) / len(self.rels)
        most = share >= self.most
        title = (
            f"{share:.0%} of the images are {what}: a property of this data set"
            if most
            else f"{len(idx)} image{'s' if len(idx) > 1 else ''} {'is' if len(idx) == 1 else 'are'} {what}"
        )
        return Finding(
            code=code,
            severity=Severity.INFO,
            title=title,
            files=tuple(self.rels[i] for i in order),
            splits=tuple(self.splits[i] for i in order),
            evidence={
                "measure": unit,
                "threshold": threshold,
                "count": int(len(idx)),
                "share": round(share, 4),
                "values": {self.rels[i]: shown(i) for i in order[:50]},
            },
            fix=fix,
            score=min(share, 1.0) if not most else 0.0,
        )


def headers_for(paths: list[Path] | None) -> list[Header | None] | None:
    return None if paths is None else [read_header(p) for p in paths]
