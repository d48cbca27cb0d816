"""Fixtures for the export tests: run folders per model, built once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.export.exportruns import make_run


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # No test may touch the user's ~/.cache (the pixel and scan caches of the image folders).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def run_of(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """run_of("resnet18", 32) -> a run folder of that model at that size, made once."""
    made: dict[tuple, Path] = {}

    def get(model: str, image_size: int, pretrained: bool = False) -> Path:
        key = (model, image_size, pretrained)
        if key not in made:
            root = tmp_path_factory.mktemp(f"{model}-{image_size}")
            made[key] = make_run(root, model, image_size=image_size, pretrained=pretrained)
        return made[key]

    return get
