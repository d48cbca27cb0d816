"""Fixtures for the image-folder tests; the generators live in imagetree.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from imagetree import write_image


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may touch the user's ~/.cache.
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "default-cache"))


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[..., Path]:
    """make_tree({"train/cat": 5, "val/dog": 2}, ext=".jpg") -> root with that many images."""

    def make(spec: dict[str, int], ext: str = ".png", root: Path | None = None) -> Path:
        root = root or tmp_path / "data"
        seed = 0
        for folder, n in spec.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                size = (20 + seed % 7, 16 + seed % 5)  # mixed sizes and aspect ratios
                write_image(root / folder / f"img{i:03d}{ext}", size=size, seed=seed)
        return root

    return make


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
