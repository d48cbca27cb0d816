"""Deterministic stratified splits: a pure function of (labels, fraction, seed)."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): `fraction` of every class held out, rounded per class.

    Each class is permuted with its own generator seeded by (seed, class), so adding a class
    does not reshuffle the others; both index arrays come back sorted.
    """
    labels = np.asarray(labels)
    keep, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        perm = np.random.default_rng([seed, int(c)]).permutation(idx)
        n_held = int(round(len(idx) * fraction))
        if fraction > 0 and len(idx) > 1:
            n_held = min(max(n_held, 1), len(idx) - 1)
        held.append(perm[:n_held])
        keep.append(perm[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))
