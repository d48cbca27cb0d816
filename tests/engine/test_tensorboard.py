"""TensorBoard events, read back with TensorBoard's own readers: a run resumed from an epoch-end
checkpoint, and one killed mid-epoch after writing past its last checkpoint, both end with
every tag's steps exactly those of an uninterrupted run, with no gap and no duplicate."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402

from cnnlab.config import OptimConfig  # noqa: E402
from cnnlab.engine.callbacks import RunCheckpoint  # noqa: E402
from cnnlab.engine.checkpoint import LAST  # noqa: E402
from cnnlab.engine.module import ClassifierModule  # noqa: E402
from cnnlab.engine.samplers import EpochSampler  # noqa: E402
from cnnlab.engine.tensorboard import TensorBoardWriter, confusion_image  # noqa: E402
from cnnlab.models import create_model  # noqa: E402

STEPS = 8  # 64 images, batch 8
EVERY = 3  # does not divide the epoch: batch events must still line up across a resume


class Crash(L.Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return TensorDataset(torch.randn(n, 1, 12, 12, generator=g) + y.view(-1, 1, 1, 1), y)


def _fit(run_dir: Path, epochs: int, *, resume: bool = False, crash_at=None, ckpt_every=None):
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=2, in_chans=1, input_size=12)
    module = ClassifierModule(model, OptimConfig(lr=0.05), epochs=4, steps_per_epoch=STEPS, seed=0)
    train = _data(64, 0)
    loaders = (
        DataLoader(train, batch_size=8, sampler=EpochSampler(len(train), seed=0)),
        DataLoader(_data(16, 1), batch_size=16),
    )
    tb = TensorBoardWriter(run_dir, every_n_steps=EVERY)
    ckpt = RunCheckpoint(
        run_dir, monitor="val_acc", mode="max", export_best=lambda *a: None,
        every_n_steps=ckpt_every,
    )  # fmt: skip
    callbacks = [tb, ckpt] + ([Crash(crash_at)] if crash_at else [])
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, callbacks=callbacks,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        use_distributed_sampler=False, default_root_dir=str(run_dir),
    )  # fmt: skip
    trainer.fit(module, *loaders, ckpt_path=str(run_dir / LAST) if resume else None)
    return tb, trainer


def _accumulated(folder: Path) -> dict[str, list[int]]:
    """tag -> steps as the Python reader shows them (it honours SessionLog.START purges)."""
    acc = ea.EventAccumulator(
        str(folder), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0}
    )
    acc.Reload()
    tags = acc.Tags()
    out = {t: [e.step for e in acc.Scalars(t)] for t in tags["scalars"]}
    out.update({t: [e.step for e in acc.Histograms(t)] for t in tags["histograms"]})
    return out


def _preempted(folder: Path) -> dict[str, list[int]]:
    """tag -> steps as the Rust data server shows them: each record drops its tag's records at
    or above its own step (tensorboard/data/server/reservoir.rs)."""
    series: dict[str, list[int]] = defaultdict(list)
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                kept = [s for s in series[value.tag] if s < event.step]
                series[value.tag] = [*kept, event.step]
    return dict(series)


def _raw_steps(folder: Path, tag: str) -> list[int]:
    return [
        e.step
        for path in sorted(folder.glob("events.out.tfevents.*"))
        for e in EventFileLoader(str(path)).Load()
        for v in e.summary.value
        if v.tag == tag
    ]


def _expected(epochs: int) -> dict[str, list[int]]:
    ends = [STEPS * (k + 1) for k in range(epochs)]
    batch = list(range(EVERY, STEPS * epochs + 1, EVERY))
    return {"batch": batch, "epoch": ends}


def _check_curves(run_dir: Path, epochs: int) -> dict[str, list[int]]:
    exp = _expected(epochs)
    train = _accumulated(run_dir / "tensorboard/train")
    val = _accumulated(run_dir / "tensorboard/validation")
    assert train["batch_loss"] == exp["batch"]
    assert train["lr/head"] == exp["batch"] and train["lr/backbone"] == exp["batch"]
    for tag in ("epoch_loss", "epoch_accuracy", "epoch"):
        assert train[tag] == exp["epoch"], tag
    assert val["epoch_loss"] == exp["epoch"] and val["epoch_accuracy"] == exp["epoch"]
    histograms = [t for t in train if t.startswith("grad_norm/")]
    assert "grad_norm/backbone.0" in histograms and "grad_norm/head.1" in histograms
    assert all(train[t] == exp["epoch"] for t in histograms)
    # the Rust data server's rule gives the same series
    for split, tags in (("train", train), ("validation", val)):
        preempted = _preempted(run_dir / "tensorboard" / split)
        assert {t: preempted[t] for t in tags} == tags
    return train


def test_resume_continues_the_curves_without_gap_or_duplicate(tmp_path):
    _fit(tmp_path, 2)
    time.sleep(1.1)  # event files are read in name order, and names start with the second
    tb, trainer = _fit(tmp_path, 4, resume=True)
    assert trainer.global_step == 4 * STEPS
    _check_curves(tmp_path, 4)


def test_events_written_after_the_last_checkpoint_are_purged_on_resume(tmp_path):
    # checkpoints every 5 steps: the last one before the crash at step 13 is step 10, mid-epoch 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path, 4, crash_at=13, ckpt_every=5)
    assert 12 in _raw_steps(tmp_path / "tensorboard/train", "batch_loss")  # an orphan
    time.sleep(1.1)
    _fit(tmp_path, 4, resume=True, ckpt_every=5)
    raw = _raw_steps(tmp_path / "tensorboard/train", "batch_loss")
    assert raw.count(12) == 2  # written twice; the readers must show it once
    _check_curves(tmp_path, 4)
    # epoch 2's histogram holds all its 8 steps: 2 from before the checkpoint, 6 after
    acc = ea.EventAccumulator(str(tmp_path / "tensorboard/train"), size_guidance={ea.HISTOGRAMS: 0})
    acc.Reload()
    counts = {e.step: e.histogram_value.num for e in acc.Histograms("grad_norm/head.1")}
    assert counts == {s: STEPS for s in _expected(4)["epoch"]}


def test_test_report_goes_to_its_own_run_with_the_confusion_matrix(tmp_path):
    tb, trainer = _fit(tmp_path, 1)
    cm = [[7, 1], [2, 6]]
    report = {
        "accuracy": 13 / 16,
        "loss": 0.4,
        "confusion_matrix": cm,
        "per_class": {"a": {}, "b": {}},
    }
    tb.log_test_report(report)
    acc = ea.EventAccumulator(str(tmp_path / "tensorboard/test"), size_guidance={ea.IMAGES: 0})
    acc.Reload()
    (scalar,) = acc.Scalars("accuracy")
    assert scalar.step == STEPS and scalar.value == pytest.approx(13 / 16)
    (image,) = acc.Images("confusion_matrix")
    assert image.step == STEPS and image.width > 100 and image.height > 100


def test_confusion_image_shades_rows_by_rate():
    img = confusion_image(np.array([[9, 1], [0, 10]]), ["a", "b"])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    # the darkest pixels (the diagonal cells, rate 0.9 and 1.0) are a saturated blue
    blue = img[..., 2].astype(int) - img[..., 0].astype(int)
    assert blue.max() > 100
