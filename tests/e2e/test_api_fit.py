"""`cnnlab.fit`: a user's own module and TensorDataset get the whole engine, Keras-style
callbacks see every epoch, and the trained model comes back (and loads back) with its best
weights."""

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import cnnlab
from cnnlab.errors import ConfigError


def blobs(n: int, seed: int) -> TensorDataset:
    """Two classes of 1x8x8 images told apart by their mean brightness."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5 + (y.float() * 2 - 1).view(-1, 1, 1, 1)
    return TensorDataset(x, y)


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2),
    )  # fmt: skip


class Recorder(cnnlab.Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("begin", type(self.model).__name__))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch", epoch, round(logs["val_acc"], 6)))

    def on_train_end(self, logs=None):
        self.events.append(("end", logs["epoch"]))


def test_fit_trains_a_users_module_on_a_tensordataset(tmp_path):
    rec = Recorder()
    net = tiny_net()
    result = cnnlab.fit(
        net, blobs(96, 0), blobs(32, 1), test_data=blobs(32, 2), classes=["dark", "light"],
        name="mine", runs_dir=tmp_path, callbacks=[rec], epochs=3, optimizer="adam", lr=0.05,
        batch_size=16, threads=2, log=lambda s: None,
    )  # fmt: skip
    assert result.status is cnnlab.RunStatus.FINISHED and result.model is net
    history = result.history
    rows = history.reset_index().to_dict("records") if hasattr(history, "reset_index") else history
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    # the callback saw the same rows metrics.csv holds, epochs counted from 1
    assert rec.events[0] == ("begin", "UserClassifier")
    assert [e[1] for e in rec.events if e[0] == "epoch"] == [1, 2, 3]
    assert [e[2] for e in rec.events if e[0] == "epoch"] == [round(r["val_acc"], 6) for r in rows]
    assert rec.events[-1] == ("end", 3)
    # an easy task: learned, evaluated on the test data, classes named
    assert result.test["accuracy"] >= 0.9 and set(result.test["per_class"]) == {"dark", "light"}
    # the returned module holds the best epoch's weights, and load_run gives them back
    best = json.loads((tmp_path / "mine" / "run.json").read_text())["best_epoch"]
    assert best == max(rows, key=lambda r: r["val_acc"])["epoch"]
    loaded = cnnlab.load_run(tmp_path / "mine", model=tiny_net())
    x = blobs(8, 5).tensors[0]
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net.eval()(x))
    assert loaded.classes == ["dark", "light"]


def test_stop_training_and_a_dataloader_without_val(tmp_path):
    class StopAfterTwo(cnnlab.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.stop_training()

    loader = DataLoader(blobs(100, 0), batch_size=20)
    result = cnnlab.fit(
        tiny_net(), loader, name="stop", runs_dir=tmp_path, callbacks=[StopAfterTwo()],
        epochs=6, threads=2, log=lambda s: None,
    )  # fmt: skip
    assert result.record["epochs_run"] == 2
    cfg = (tmp_path / "stop" / "config.yaml").read_text()
    assert "batch_size: 20" in cfg  # the DataLoader's batch size
    counts = json.loads((tmp_path / "stop" / "class_counts.json").read_text())
    assert counts["counts"]["val"] == [5, 5]  # 10% of each class held out, stratified


def test_fit_refuses_options_for_cnnlabs_own_models(tmp_path):
    with pytest.raises(ConfigError, match="freeze your module's parameters"):
        cnnlab.fit(tiny_net(), blobs(20, 0), runs_dir=tmp_path, freeze_backbone=True)


def test_fit_without_any_validation_image_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="no validation data: pass val_data or set val_fraction"):
        cnnlab.fit(tiny_net(), blobs(40, 0), name="noval", runs_dir=tmp_path, val_fraction=0.0,
                   epochs=1, threads=2, log=lambda s: None)  # fmt: skip
    assert not (tmp_path / "noval").exists()  # the name stays free
