"""DDP on CPU (gloo): 2 processes give the same training as 1 process with the same global batch."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import cnnlab
from cnnlab.models.base import CnnClassifier
from cnnlab.models.registry import register_model, unregister_model

pytestmark = [pytest.mark.ddp, pytest.mark.usefixtures("fmnist")]


@pytest.fixture
def nobn_model():
    """Without BatchNorm, per-rank batches give exactly the single-process gradient (BN would
    normalise each half-batch by its own statistics; SyncBatchNorm needs CUDA). Registered for
    this test only, so list_models() is the same for every other test."""

    @register_model("test_nobn", family="test", default_input=28, in_chans=1)
    def _nobn(*, num_classes, in_chans, input_size, dropout):
        body = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        return CnnClassifier(body, 16, num_classes, dropout)

    yield "test_nobn"
    unregister_model("test_nobn")


def _metrics(path):
    import csv

    with open(path) as fh:
        return [r for r in csv.DictReader(fh)]


def test_two_processes_match_one(tmp_path, nobn_model):
    common = dict(
        model=nobn_model, epochs=2, subset=512, batch_size=64, threads=1, seed=1,
        deterministic=True, dropout=0.0, runs_dir=tmp_path, log=lambda s: None,
    )  # fmt: skip
    one = cnnlab.train(name="one", **common)
    two = cnnlab.train(name="two", devices=2, **common)
    w1, w2 = (
        load_file(str(one.run_dir / "model.safetensors")),
        load_file(str(two.run_dir / "model.safetensors")),
    )
    # same data, same global batches: equal up to the order of the gradient all-reduce sum
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)
    m1, m2 = _metrics(one.run_dir / "metrics.csv"), _metrics(two.run_dir / "metrics.csv")
    assert len(m1) == len(m2) == 2
    for a, b in zip(m1, m2, strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-3, abs=1e-4), key
    # validation counted every sample once, over both ranks: the histogram sums to the split
    # size and equals the single process's
    signals = [json.loads(s) for s in (two.run_dir / "signals.jsonl").read_text().splitlines()]
    signals_one = [json.loads(s) for s in (one.run_dir / "signals.jsonl").read_text().splitlines()]
    assert sum(signals[-1]["val_pred_histogram"]) == 512
    assert signals[-1]["val_pred_histogram"] == signals_one[-1]["val_pred_histogram"]
    assert json.loads((two.run_dir / "run.json").read_text())["status"] == "finished"
