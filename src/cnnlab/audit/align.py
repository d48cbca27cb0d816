"""Is image b a crop, a mirror or a rescale of image a? A check on the pixels, for pairs that
the hashes or the embeddings make candidates.

`edge_correlation` compares two aligned 32x32 thumbnails by their Laplacians (edges and
texture), not their grey levels: two different trousers on black share a silhouette and
correlate at 0.95 in grey levels, but not in edges; a re-encoded, resized or mirrored copy keeps
its edges (0.99 and up on photos).

`best_alignment` searches the window of a (whole, or 90% / 80% of each side at a grid of
positions, mirrored or not) whose thumbnail matches b's, and the other way round: a copy
cropped anywhere, not only in the centre, is then found with its crop box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cnnlab.audit.hashing import THUMB, correlation

SCALES = (1.0, 0.9, 0.8)  # share of each side a crop keeps
STEPS = 7  # window positions per axis for scales below 1


def laplacian(t: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of (..., H, W) thumbnails: (..., H - 2, W - 2) float64."""
    f = t.astype(np.float64)
    c = f[..., 1:-1, 1:-1]
    return 4 * c - f[..., :-2, 1:-1] - f[..., 2:, 1:-1] - f[..., 1:-1, :-2] - f[..., 1:-1, 2:]


def edge_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the Laplacians of two thumbnails; for images without edges
    (flat cards), the grey-level rule of hashing.correlation."""
    return float(edge_correlations(a[None], b[None])[0])


def edge_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """edge_correlation of a[k] and b[k] for (P, H, W) stacks; `b` may be one (H, W)."""
    x = laplacian(a).reshape(len(a), -1)
    y = laplacian(b).reshape(-1 if b.ndim == 3 else 1, x.shape[1])
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    nx, ny = np.sqrt((x * x).sum(axis=1)), np.sqrt((y * y).sum(axis=1))
    out = (x * y).sum(axis=1) / np.maximum(nx * ny, 1e-12)
    # under one grey level of edge energy in total: no edges, compare grey levels instead
    for k in np.flatnonzero((nx < 1.0) | (ny < 1.0)):
        out[k] = correlation(a[k], b[k] if b.ndim == 3 else b)
    return out


@dataclass(frozen=True)
class Alignment:
    edge: float  # edge correlation at the best window
    corr: float  # grey-level correlation there
    scale: float  # share of each side of the larger image that the smaller one shows
    offset: tuple[float, float]  # window's left, top as a share of the width, height
    mirrored: bool
    crop_of: str  # "a" when b is a window of a, "b" when a is a window of b

    def describe(self) -> str:
        parts = ["mirrored"] if self.mirrored else []
        if self.scale < 1.0:
            x, y = self.offset
            parts.append(f"cropped to {self.scale:.0%} at ({x:.0%}, {y:.0%})")
        return ", ".join(parts) or "re-encoded or resized"


def windows(
    g: Image.Image, scales: tuple[float, ...] = SCALES, steps: int = STEPS
) -> tuple[list[tuple[float, tuple[float, float]]], np.ndarray]:
    """Every window of `g` searched: [(scale, (left, top) shares)], (W, 32, 32) thumbnails."""
    w, h = g.size
    meta, thumbs = [], []
    for s in scales:
        n = 1 if s >= 1.0 else steps
        for fy in np.linspace(0.0, 1.0 - s, n):
            for fx in np.linspace(0.0, 1.0 - s, n):
                box = (fx * w, fy * h, (fx + s) * w, (fy + s) * h)
                thumbs.append(np.asarray(g.resize((THUMB, THUMB), Image.Resampling.BOX, box=box)))
                meta.append((s, (float(fx), float(fy))))
    return meta, np.stack(thumbs)


def best_alignment(ga: Image.Image, gb: Image.Image) -> Alignment:
    """The best-matching window (by edge correlation) of either image against the other."""
    best: Alignment | None = None
    for big, small, who in ((ga, gb, "a"), (gb, ga, "b")):
        meta, stack = windows(big)
        if who == "b":  # the whole-image comparison was made in the first pass
            meta, stack = meta[1:], stack[1:]
        target = np.asarray(small.resize((THUMB, THUMB), Image.Resampling.BOX))
        for mirrored in (False, True):
            tgt = target[:, ::-1] if mirrored else target
            e = edge_correlations(stack, tgt)
            k = int(e.argmax())
            if best is None or e[k] > best.edge:
                s, off = meta[k]
                best = Alignment(float(e[k]), correlation(stack[k], tgt), s, off, mirrored, who)
    assert best is not None
    return best
