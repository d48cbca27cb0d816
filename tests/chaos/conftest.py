"""One tiny trained run (two classes of 20x16 images at 16 px: seconds on 2 cores), copied fresh
for each case that damages it, and the data it was trained on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.data.imagetree import write_image

# a run small enough to train in seconds, with the pixel cache off so that every epoch reads
# the files again (a file that vanishes mid-run is noticed)
TINY = ["--image-size", "16", "--batch-size", "8", "--threads", "2", "--cache", "off",
        "--seed", "0", "--lr", "0.05"]  # fmt: skip


def make_photos(root: Path, per_class: int = 10, classes: tuple[str, ...] = ("ants", "bees")):
    seed = 0
    for cls in classes:
        for i in range(per_class):
            seed += 1
            size = (20 + seed % 7, 16 + seed % 5)
            write_image(root / cls / f"img{i:02d}.png", size=size, seed=seed)
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No case may touch the user's ~/.cache (nor count it as "outside the run folder").
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ants/ and bees/, 10 images each, and `ants/up -> ..`: a link back to the data root that
    would make every bee an ant if it were followed."""
    root = make_photos(tmp_path_factory.mktemp("chaos") / "photos")
    os.symlink("..", root / "ants" / "up")
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> Path:
    """A finished 2-epoch run named `r` (never modified: cases work on `run`, a copy)."""
    from cnnlab.cli import main

    runs = tmp_path_factory.mktemp("trained")
    args = ["train", "--name", "r", "--runs-dir", runs, "--data", photos, "--epochs", "2", *TINY]
    assert main([str(a) for a in args]) == 0
    return runs / "r"


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained run, as runs/r under this case's tmp_path."""
    dest = tmp_path / "runs" / "r"
    shutil.copytree(trained, dest)
    return dest
