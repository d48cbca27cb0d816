"""Checkpoint files: atomic writes, safe loads, and a resume that never silently starts over.

`last.ckpt` is rotated to `last.prev.ckpt` when a new one is complete, just before it takes the
name: a write that fails (a full disk, a kill) leaves last.ckpt as it was, and a new file that
turns out unreadable still leaves the previous state. Every load passes `weights_only=True`
explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from cnnlab.errors import CheckpointError, RunError, UnsafeCheckpointError
from cnnlab.fsio import write_with

LAST, PREV, BEST = "last.ckpt", "last.prev.ckpt", "best.ckpt"


def safe_load(path: str | Path) -> Any:
    from cnnlab.models.weights_io import safe_torch_load

    return safe_torch_load(path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with fsync'd atomic writes and weights_only loads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        path = Path(path)
        # Lightning calls this on global rank 0 only; the rotation follows the same rule
        rotate = (lambda: rotate_last(path.parent)) if path.name == LAST else None
        write_with(path, lambda tmp: torch.save(checkpoint, tmp), before_replace=rotate)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: Any = None
    ) -> dict:
        if str(path).startswith(("http://", "https://")):
            raise CheckpointError(
                f"refusing to load a checkpoint from a URL ({path}); download it first"
            )
        return safe_load(path)


def rotate_last(run_dir: Path) -> None:
    last = run_dir / LAST
    if last.exists():
        os.replace(last, run_dir / PREV)


def is_loadable(path: Path) -> bool:
    try:
        ckpt = safe_load(path)
    except UnsafeCheckpointError:
        raise  # never skipped over quietly: someone put a code-carrying file here
    except CheckpointError:
        return False
    return isinstance(ckpt, dict) and "state_dict" in ckpt and "loops" in ckpt


def resume_checkpoint(run_dir: Path, log=print) -> Path:
    """The newest usable training checkpoint of a run; an error when there is none."""
    for name in (LAST, PREV):
        path = run_dir / name
        if not path.exists():
            continue
        if is_loadable(path):
            if name == PREV:
                log(f"resume: {LAST} is missing or unreadable; using {PREV}")
            return path
        log(f"resume: {path} is corrupt or not a cnnlab checkpoint; trying the previous one")
    raise RunError(
        f"nothing to resume in {run_dir}: no usable {LAST} or {PREV}; "
        f"start a new run with `cnnlab train --name NEW` or `--force` to retrain this one"
    )
