"""Checkpoint files: a write that fails leaves last.ckpt as it was; one that succeeds keeps the
previous as last.prev.ckpt."""

import errno

import pytest
import torch

from cnnlab.engine import checkpoint
from cnnlab.engine.checkpoint import AtomicCheckpointIO


def test_last_is_rotated_only_when_the_new_one_is_complete(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1}, tmp_path / "last.ckpt")
    io.save_checkpoint({"epoch": 2}, tmp_path / "last.ckpt")
    assert checkpoint.safe_load(tmp_path / "last.ckpt")["epoch"] == 2
    assert checkpoint.safe_load(tmp_path / "last.prev.ckpt")["epoch"] == 1

    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        io.save_checkpoint({"epoch": 3}, tmp_path / "last.ckpt")
    # nothing moved: epoch 2 is still last.ckpt, epoch 1 still the previous, no temporary
    assert checkpoint.safe_load(tmp_path / "last.ckpt")["epoch"] == 2
    assert checkpoint.safe_load(tmp_path / "last.prev.ckpt")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.prev.ckpt"]


def test_other_checkpoints_are_not_rotated(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1}, tmp_path / "best.ckpt")
    io.save_checkpoint({"epoch": 2}, tmp_path / "best.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]
