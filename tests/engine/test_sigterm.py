"""SIGTERM in a training process: always cnnlab's interruption (a checkpoint, status
`interrupted`, exit 130), never Lightning's own SystemExit, which exits with status 0."""

from __future__ import annotations

import json
import os
import signal

import lightning as L
import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException
from tests.procs import metrics_rows

import cnnlab
from cnnlab.errors import InterruptedRun

pytestmark = pytest.mark.usefixtures("fmnist")
# 960 images: 864 train (14 batches), 96 val (2 batches of 64)
SMALL = {"data.subset": 960, "data.batch_size": 64, "train.epochs": 3, "train.threads": 2,
         "train.seed": 0}  # fmt: skip


class SigtermInValidation(L.Callback):
    """SIGTERM to this process after the first validation batch of epoch `epoch` (0-based)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch and batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_validation_finishes_the_epoch_then_interrupts(runs_dir) -> None:
    # Lightning's handler would end validation at its next batch with a SystemExit (exit 0);
    # cnnlab's lets the epoch finish, checkpoints it and stops
    with pytest.raises(InterruptedRun, match="interrupted; checkpoint saved"):
        cnnlab.train(name="v", log=lambda s: None, callbacks=[SigtermInValidation(1)], **SMALL)
    run = runs_dir / "v"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert [int(r["epoch"]) for r in metrics_rows(run)] == [1, 2]  # epoch 2 was kept
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers given back
    cnnlab.train(resume=str(run), log=lambda s: None)
    assert [int(r["epoch"]) for r in metrics_rows(run)] == [1, 2, 3]


class LightningSigterm(L.Callback):
    """What Lightning's loops raise once its own handler has seen a SIGTERM (under DDP, or in
    the sanity check), raised in the middle of epoch 2."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == 1 and batch_idx == 3:
            raise SIGTERMException()


def test_lightnings_sigterm_exception_is_the_same_interruption(runs_dir) -> None:
    with pytest.raises(InterruptedRun, match="interrupted; checkpoint saved"):
        cnnlab.train(name="l", log=lambda s: None, callbacks=[LightningSigterm()], **SMALL)
    run = runs_dir / "l"
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "interrupted" and status["stop_reason"] == "interrupted by SIGTERM"
    assert [int(r["epoch"]) for r in metrics_rows(run)] == [1]  # from epoch 1's checkpoint
    cnnlab.train(resume=str(run), log=lambda s: None)
    assert [int(r["epoch"]) for r in metrics_rows(run)] == [1, 2, 3]
