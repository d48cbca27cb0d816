"""Pair searches over all images, in row blocks so memory stays O(block x N).

`hash_candidates`: pairs whose perceptual hashes are within a Hamming radius under any of the
comparisons a copy can need (as is, mirrored, one of them centre-cropped). `similar_pairs` and
`class_neighbors`: cosine similarity of embeddings (rows L2-normalised), the pairs above a
threshold and each image's nearest neighbours in its own class. Both are brute force: N^2 / 2
comparisons, which for embeddings costs N*D multiply-adds per image, far below the backbone's
~0.4 GMAC per image up to several hundred thousand images.
"""

from __future__ import annotations

import numpy as np

from cnnlab.audit.hashing import hamming

# (variant of image i, variant of image j): 0 = whole image, 1/2 = central 90%/80% crops,
# "m" = the mirrored whole image. A copy cropped from i matches i's crop against its whole.
COMBOS: tuple[tuple[int, int | str], ...] = ((0, 0), (0, "m"), (1, 0), (2, 0), (0, 1), (0, 2))


def combo_distances(h: np.ndarray, m: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(P, len(COMBOS)) Hamming distances of pairs (i[p], j[p]); h (N, V) uint64, m (N,)."""
    cols = []
    for a, b in COMBOS:
        hb = m[j] if b == "m" else h[j, b]
        cols.append(hamming(h[i, a], hb))
    return np.stack(cols, axis=1).astype(np.int16)


def hash_candidates(h: np.ndarray, m: np.ndarray, radius: int, block: int = 1024) -> np.ndarray:
    """(P, 2) pairs i < j whose best combo distance is <= radius."""
    n = len(h)
    found = []
    for s in range(0, n, block):
        e = min(n, s + block)
        d = None
        for a, b in COMBOS:
            cols = m[s:] if b == "m" else h[s:, b]
            dist = hamming(h[s:e, a][:, None], cols[None, :])
            d = dist if d is None else np.minimum(d, dist, out=d)
        ii, jj = np.nonzero(d <= radius)
        jj = jj + s
        ii = ii + s
        keep = jj > ii
        found.append(np.stack([ii[keep], jj[keep]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def normalize(e: np.ndarray) -> np.ndarray:
    """Rows centred on the data set's mean, then L2-normalised (float32).

    Centring removes what all images of one data set share (all photos of insects), which
    otherwise lifts every cosine: on ants/bees the largest similarity between different photos
    drops from 0.81 to 0.70 while copies keep 0.77-0.98 (benchmarks/RESULTS.md).
    """
    x = e.astype(np.float32) - e.astype(np.float32).mean(axis=0, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def similar_pairs(e: np.ndarray, threshold: float, block: int = 2048) -> np.ndarray:
    """(P, 2) pairs i < j with cosine(e[i], e[j]) >= threshold; `e` from `normalize`."""
    n = len(e)
    found = []
    for s in range(0, n, block):
        sim = e[s : s + block] @ e[s:].T
        ii, jj = np.nonzero(sim >= threshold)
        ii, jj = ii + s, jj + s
        keep = jj > ii
        found.append(np.stack([ii[keep], jj[keep]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def class_neighbors(
    e: np.ndarray, labels: np.ndarray, k: int, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """(sims (N, k), index (N, k)) of each image's k most similar images of its own class.

    Fewer than k others in a class: the missing columns hold nan and -1.
    """
    n = len(e)
    sims = np.full((n, k), np.nan, dtype=np.float32)
    idx = np.full((n, k), -1, dtype=np.int64)
    for s in range(0, n, block):
        sim = e[s : s + block] @ e.T  # (B, N)
        rows = np.arange(sim.shape[0])
        sim[rows, rows + s] = -np.inf  # not its own neighbour
        sim[labels[s : s + block, None] != labels[None, :]] = -np.inf
        kk = min(k, n - 1)
        if kk <= 0:
            continue
        top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        top_sim = np.take_along_axis(sim, top, axis=1)
        order = np.argsort(-top_sim, axis=1)
        top, top_sim = np.take_along_axis(top, order, 1), np.take_along_axis(top_sim, order, 1)
        valid = np.isfinite(top_sim)
        sims[s : s + len(sim), :kk] = np.where(valid, top_sim, np.nan)
        idx[s : s + len(sim), :kk] = np.where(valid, top, -1)
    return sims, idx
