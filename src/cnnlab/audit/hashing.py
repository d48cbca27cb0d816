"""Content digests, thumbnails and perceptual hashes: pure functions on uint8 pixels.

`digest` names identical pixels (exact duplicates). `thumbnails` are 32x32 grayscale views of the
whole image and of its central 90% and 80% (copies cropped by a few percent look like one of
those). `phash` is the DCT perceptual hash (Zauner 2010; `imagehash.phash`): the 8x8 lowest
frequencies of the 32x32 DCT-II of the thumbnail, each bit "above the median of the 64".
A horizontal flip multiplies the coefficient of horizontal frequency v by (-1)^v, so the hash
of the mirrored image comes from the same coefficients, without a second thumbnail.

Hashes are uint64; distances are Hamming distances (`popcount` of the XOR).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
from PIL import Image

THUMB = 32  # DCT input size: imagehash's phash default (hash_size 8, highfreq_factor 4)
HASH_BITS = 8  # 8x8 lowest frequencies -> 64-bit hash
CROPS = (1.0, 0.9, 0.8)  # central fractions of each side kept by the thumbnails
_LUT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def digest(a: np.ndarray) -> bytes:
    """16 bytes naming the exact pixels (shape included): equal digests, equal images."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(a.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(a).data)
    return h.digest()


def gray(a: np.ndarray) -> Image.Image:
    """(H, W, C) uint8 -> Pillow 'L' image (ITU-R 601 luma, as Pillow converts)."""
    if a.shape[2] == 1:
        return Image.fromarray(a[:, :, 0], "L")
    return Image.fromarray(np.ascontiguousarray(a[:, :, :3]), "RGB").convert("L")


def at_most(g: Image.Image, side: int) -> Image.Image:
    """`g` with its shorter side box-reduced to `side` (never enlarged)."""
    w, h = g.size
    if min(w, h) <= side:
        return g
    f = side / min(w, h)
    return g.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BOX)


def thumbnails(g: Image.Image, crops: tuple[float, ...] = CROPS) -> np.ndarray:
    """(len(crops), THUMB, THUMB) uint8: box-filtered (area-averaged) central crops of `g`."""
    w, h = g.size
    out = np.empty((len(crops), THUMB, THUMB), dtype=np.uint8)
    for k, f in enumerate(crops):
        dx, dy = w * (1 - f) / 2, h * (1 - f) / 2
        box = (dx, dy, w - dx, h - dy)
        out[k] = np.asarray(g.resize((THUMB, THUMB), Image.Resampling.BOX, box=box))
    return out


@functools.lru_cache(maxsize=4)
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix M (n, n): coefficients of x are M @ x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def phash(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, hashes of the mirrored images), each (N,) uint64, from (N, 32, 32) thumbnails."""
    x = thumbs.astype(np.float64)
    m = dct_matrix(x.shape[-1])[:HASH_BITS]  # only the lowest frequencies are ever used
    low = np.einsum("ui,nij,vj->nuv", m, x, m)  # (N, 8, 8): rows vertical, columns horizontal
    mirrored = low * ((-1.0) ** np.arange(HASH_BITS))[None, None, :]
    return _bits_to_u64(low), _bits_to_u64(mirrored)


def _bits_to_u64(low: np.ndarray) -> np.ndarray:
    flat = low.reshape(len(low), -1)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per element of a uint64 array, as uint8."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    b = np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, 8)
    return _LUT[b].sum(axis=-1, dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise (broadcast) Hamming distance between uint64 hash arrays."""
    return popcount(np.bitwise_xor(a, b))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two thumbnails; flat images are 1 if alike in level, else 0."""
    x = a.astype(np.float64).ravel()
    y = b.astype(np.float64).ravel()
    sx, sy = x.std(), y.std()
    if sx < 1.0 or sy < 1.0:  # below one grey level of spread: no pattern to correlate
        return 1.0 if abs(x.mean() - y.mean()) < 8 and max(sx, sy) < 4 else 0.0
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))
