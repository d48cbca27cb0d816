"""Fixtures for the audit tests; the generators live in audittree.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may touch the user's ~/.cache (pixel packs, scan cache, embeddings).
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "default-cache"))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def fake_fmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A 40/20-image Fashion-MNIST lookalike; returns (images, labels) per split."""
    import gzip
    import struct

    import numpy as np

    from cnnlab.data import fashion_mnist as fm

    counts = {"train": 40, "test": 20}
    files = {s: (i, lbl, counts[s]) for s, (i, lbl, _) in fm.FILES.items()}
    monkeypatch.setattr(fm, "FILES", files)
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "fmnist"
    folder.mkdir()
    monkeypatch.setenv(fm.ENV_VAR, str(folder))
    rng = np.random.default_rng(0)
    images, labels = {}, {}
    for split, (_, _, n) in files.items():
        small = rng.integers(0, 256, (n, 7, 7), dtype=np.uint8)
        images[split] = np.kron(small, np.ones((4, 4), dtype=np.uint8))  # 28x28 blocks
        labels[split] = (np.arange(n) % 2).astype(np.uint8)
    images["test"][5] = images["train"][12]  # a train image in test: the issue-44 situation
    labels["test"][5] = labels["train"][12]
    for split, (iname, lname, _) in files.items():
        for name, arr in ((iname, images[split]), (lname, labels[split])):
            header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(
                f">{arr.ndim}I", *arr.shape
            )
            (folder / name).write_bytes(gzip.compress(header + arr.tobytes()))
    return images, labels
