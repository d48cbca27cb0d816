"""A full disk while training: exit 6, one line naming the folder, the last good checkpoint
intact and resumable once space is free, run.json saying so."""

from __future__ import annotations

import errno
import io
import os

import torch

from tests.chaos.conftest import TINY
from tests.chaos.harness import (
    EXIT_DISK_FULL,
    cli,
    epochs_in,
    history,
    load_checkpoint,
    status,
    untouched_outside,
)


class FullDisk:
    """torch.save that fills the disk on the n-th write of last.ckpt: half the bytes land in
    the temporary file, then ENOSPC (what a real full disk does)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0
        self.real = torch.save

    def __call__(self, obj, f, *args, **kwargs):
        name = os.path.basename(str(f))
        if name.startswith(".last.tmp-"):
            self.calls += 1
            if self.calls == self.n:
                buf = io.BytesIO()
                self.real(obj, buf, *args, **kwargs)
                with open(f, "wb") as fh:
                    fh.write(buf.getvalue()[: buf.tell() // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return self.real(obj, f, *args, **kwargs)


def test_disk_full_during_training_keeps_the_last_good_checkpoint(
    capsys, monkeypatch, photos, tmp_path
):
    runs = tmp_path / "runs"
    run = runs / "full"
    monkeypatch.setattr(torch, "save", FullDisk(n=2))
    argv = ["train", "--runs-dir", runs, "--name", "full", "--data", photos, "--epochs", "2", *TINY]
    with untouched_outside([tmp_path, photos], run):
        outcome = cli(capsys, *argv)
    outcome.expect(EXIT_DISK_FULL, f"no space left on the device of {run}",
                   f"`cnnlab train --resume {run}`", alone=False)  # fmt: skip
    record = status(run)
    assert record["status"] == "failed" and record["error"] == "disk full"
    # the checkpoint of epoch 1 is still last.ckpt (the half-written one never replaced it)
    assert epochs_in(load_checkpoint(run / "last.ckpt")) == 1
    assert not list(run.glob(".*.tmp-*"))
    # space is free again: the run resumes and finishes
    monkeypatch.undo()
    with untouched_outside([tmp_path, photos], run):
        cli(capsys, "train", "--resume", run).expect(0)
    assert status(run)["status"] == "finished"
    assert [int(r["epoch"]) for r in history(run)] == [1, 2]


def test_disk_full_during_set_up_leaves_nothing_and_frees_the_name(
    capsys, monkeypatch, photos, tmp_path
):
    """ENOSPC on config.yaml, the run's first file: run.json stayed 'preparing' forever."""
    from cnnlab import fsio

    runs = tmp_path / "runs"
    real = fsio.write_text

    def full(path, *args, **kwargs):
        if os.path.basename(str(path)) == "config.yaml":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr("cnnlab.training.write_text", full)
    argv = ["train", "--runs-dir", runs, "--name", "full", "--data", photos, "--epochs", "1", *TINY]
    with untouched_outside([tmp_path, photos], runs / "full"):
        outcome = cli(capsys, *argv)
    outcome.expect(EXIT_DISK_FULL, "no space left", alone=False)
    assert not (runs / "full").exists()
