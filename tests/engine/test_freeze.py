"""Freezing really freezes (weights and BatchNorm statistics), unfreezing really trains, and a
frozen backbone without augmentation runs once per sample thanks to the feature cache."""

import torch
from torch.utils.data import Dataset

from cnnlab.config import Config
from cnnlab.data.bundle import DataBundle
from cnnlab.engine.trainer import fit
from cnnlab.models import create_model
from cnnlab.models.spec import PreprocessSpec
from cnnlab.plan import make_plan


class Blobs(Dataset):
    """Two classes of 12x12 images told apart by brightness; counts the images it decodes."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.targets = [i % 2 for i in range(n)]
        self.x = torch.randn(n, 1, 12, 12, generator=g) + torch.tensor(self.targets).view(
            -1, 1, 1, 1
        )
        self.decoded = 0

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        self.decoded += 1
        return self.x[i], self.targets[i]


def _run(tmp_path, monkeypatch=None, decoded=None, workers=0, **model_opts):
    decoded = [] if decoded is None else decoded
    cfg = Config()
    cfg.set("data.workers", workers)
    cfg.set("train.epochs", 2)
    cfg.set("data.batch_size", 16)
    cfg.set("data.augment", "none")
    for k, v in model_opts.items():
        cfg.set(f"model.{k}", v)
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=2, in_chans=1, input_size=12)
    spec = PreprocessSpec(input_size=(1, 12, 12), mean=(0.0,), std=(1.0,))
    bundle = DataBundle(["a", "b"], Blobs(64, 0), Blobs(32, 1), None, spec, {}, {})
    decoded.extend([bundle.train, bundle.val])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    caches = []
    if monkeypatch is not None:  # keep the feature caches the engine makes, to count passes
        import cnnlab.engine.trainer as trainer

        class Kept(trainer.FeatureCache):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                caches.append(self)

        monkeypatch.setattr(trainer, "FeatureCache", Kept)
    fit(make_plan(cfg, tmp_path), bundle, model, export_best=lambda *a: None, log=lambda s: None)
    return before, model.state_dict(), caches


def _changed(before, after, prefix):
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def test_frozen_backbone_keeps_weights_and_bn_stats_and_caches_features(tmp_path, monkeypatch):
    before, after, caches = _run(tmp_path, monkeypatch, freeze_backbone=True)
    assert _changed(before, after, "backbone.") == []  # incl. running_mean/var
    assert _changed(before, after, "head.")
    # 2 epochs, yet 64 train + 32 val images went through the backbone once each
    assert [(c.n, c.computed) for c in caches] == [(64, 64), (32, 32)]


def test_one_process_encodes_every_image_up_front_in_inference_batches(tmp_path, monkeypatch):
    import cnnlab.engine.feature_cache as feature_cache
    import cnnlab.engine.module as module

    monkeypatch.setattr(module, "FILL_BATCH", 24)
    encoded, real = [], feature_cache.SharedEncoder.__call__
    monkeypatch.setattr(
        feature_cache.SharedEncoder,
        "__call__",
        lambda self, x: encoded.append(len(x)) or real(self, x),
    )
    _, _, caches = _run(tmp_path, monkeypatch, freeze_backbone=True)
    # training batches are 16: these are the fill's batches of 24, one stream over the 64 train
    # and 32 validation images (the third batch: train's last 16 and validation's first 8)
    assert encoded == [24, 24, 24, 24]
    assert [(c.n, c.computed) for c in caches] == [(64, 64), (32, 32)]


def test_once_features_are_cached_no_image_is_decoded_again(tmp_path, monkeypatch):
    datasets = []
    _, after, _ = _run(tmp_path, monkeypatch, datasets, freeze_backbone=True)
    # 2 epochs: each image decoded once, for the backbone's one pass
    assert [d.decoded for d in datasets] == [64, 32]
    # and the head trained on them: the same head as a run that decoded every epoch
    twin = []
    monkeypatch.setattr(
        "cnnlab.data.bundle.IndexedDataset.features_cached", lambda self, labels: None
    )
    _, decoding, _ = _run(tmp_path / "twin", None, twin, freeze_backbone=True)
    assert [d.decoded for d in twin] == [64 * 3, 32 * 3]  # the fill, then 2 epochs
    assert all(torch.equal(after[k], decoding[k]) for k in after)


def test_train_and_validation_caches_fold_the_backbone_once(tmp_path, monkeypatch):
    import cnnlab.engine.feature_cache as feature_cache

    built = []
    real = feature_cache.inference_encoder
    monkeypatch.setattr(
        feature_cache, "inference_encoder", lambda *a, **k: built.append(1) or real(*a, **k)
    )
    _, _, caches = _run(tmp_path, monkeypatch, freeze_backbone=True)
    assert [c.computed for c in caches] == [64, 32] and len(built) == 1


def test_loader_workers_see_the_cached_features_and_their_labels(tmp_path):
    # persistent workers start before the fill: the flag and the labels reach them through
    # shared memory, and the head trains exactly as in one process
    _, in_process, _ = _run(tmp_path / "w0", freeze_backbone=True)
    _, with_workers, _ = _run(tmp_path / "w2", workers=2, freeze_backbone=True)
    assert all(torch.equal(in_process[k], with_workers[k]) for k in in_process)


def test_unfreeze_trains_the_backbone(tmp_path, monkeypatch):
    before, after, caches = _run(tmp_path, monkeypatch, freeze_backbone=True, unfreeze_at=1)
    changed = _changed(before, after, "backbone.")
    assert any("running_mean" in k for k in changed) and any(k.endswith("weight") for k in changed)
    assert caches == []  # features change once the backbone trains: nothing is cached


def test_bn_eval_trains_weights_but_keeps_batchnorm_statistics(tmp_path):
    before, after, _ = _run(tmp_path, bn_eval=True)
    changed = _changed(before, after, "backbone.")
    assert not any("running_" in k or "num_batches" in k for k in changed)
    assert any(k.endswith("weight") for k in changed)
