"""FeatureCache: each sample's features computed once; with a backbone, by its folded copy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.engine.feature_cache import FeatureCache
from cnnlab.models import create_model


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=10)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():  # non-trivial statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.backbone.eval()


@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_features_equal_the_backbones_and_are_computed_once(channels_last):
    backbone = _backbone()
    x = torch.randn(10, 1, 28, 28)
    with torch.no_grad():
        expected = backbone(x)
    calls = []
    cache = FeatureCache(10, backbone=backbone, channels_last=channels_last)

    def compute(batch):  # the fallback: never used when a backbone is given
        calls.append(len(batch))
        return backbone(batch)

    first = cache.lookup(x[:6], torch.arange(6), compute)
    again = cache.lookup(x[[2, 6, 7, 8, 9]], torch.tensor([2, 6, 7, 8, 9]), compute)
    assert calls == []
    torch.testing.assert_close(first, expected[:6], rtol=0, atol=1e-4)
    torch.testing.assert_close(again, expected[[2, 6, 7, 8, 9]], rtol=0, atol=1e-4)
    assert bool(cache.filled.all()) and cache.computed == cache.n
    assert not first.is_inference()  # the head trains on them: autograd must accept them


def test_without_a_backbone_the_given_function_computes_each_sample_once():
    backbone = _backbone()
    x = torch.randn(8, 1, 28, 28)
    seen = []

    def compute(batch):
        seen.append(len(batch))
        return backbone(batch)

    cache = FeatureCache(8)
    cache.lookup(x[:5], torch.arange(5), compute)
    out = cache.lookup(x[3:], torch.arange(3, 8), compute)
    assert seen == [5, 3]
    with torch.no_grad():
        torch.testing.assert_close(out, backbone(x[3:]))


def test_fill_computes_every_sample_up_front_in_order():
    from torch.utils.data import TensorDataset

    backbone = _backbone()
    x = torch.randint(0, 256, (9, 1, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5])
    data = TensorDataset(x, labels)
    cache = FeatureCache(9, backbone=backbone)
    cache.fill(data, batch_size=4, transform=lambda b: b.float() / 255.0)
    assert bool(cache.filled.all()) and cache.computed == cache.n
    seen = cache.cached_labels()  # the items' own, in order
    assert seen.dtype == torch.int64 and seen.tolist() == labels.tolist()

    def never(batch):
        raise AssertionError("filled samples are not recomputed")

    out = cache.lookup(x.float() / 255.0, torch.arange(9), never)
    with torch.no_grad():
        expected = backbone(x.float() / 255.0)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


def test_labels_are_known_once_every_lookup_gave_them():
    backbone = _backbone()
    x = torch.rand(6, 1, 28, 28)
    cache = FeatureCache(6, backbone=backbone)
    cache.lookup(x[:4], torch.arange(4), None, torch.tensor([5, 6, 7, 8]))
    assert cache.cached_labels() is None  # two items not seen yet
    # a lazily filled cache (validation batches after a mid-epoch resume): part known already
    cache.lookup(x[2:], torch.arange(2, 6), None, torch.tensor([0, 0, 9, 4]))
    assert cache.cached_labels().tolist() == [5, 6, 7, 8, 9, 4]  # the first labels stay
    unlabelled = FeatureCache(6, backbone=backbone)
    unlabelled.lookup(x, torch.arange(6), None)
    assert unlabelled.complete and unlabelled.cached_labels() is None


def test_an_empty_split_is_complete_with_no_labels_and_fill_reads_nothing():
    from torch.utils.data import TensorDataset

    cache = FeatureCache(0, backbone=_backbone())
    cache.fill(TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0)))
    assert cache.complete and cache.cached_labels().shape == (0,) and cache.computed == 0


def test_splits_fill_in_one_stream_of_equal_batches_across_their_boundary():
    from torch.utils.data import TensorDataset

    from cnnlab.engine.feature_cache import SharedEncoder, fill_caches

    backbone = _backbone()
    g = torch.Generator().manual_seed(2)
    x_train = torch.randint(0, 256, (7, 1, 28, 28), dtype=torch.uint8, generator=g)
    x_val = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8, generator=g)
    y_train, y_val = torch.arange(7) % 3, torch.arange(6) % 5 + 3
    shared, shapes = SharedEncoder(backbone, channels_last=False), []

    def encoder(batch):  # the shared encoder, counting the batch sizes it is given
        shapes.append(len(batch))
        return shared(batch)

    train, val = FeatureCache(7, encoder=encoder), FeatureCache(6, encoder=encoder)
    fill_caches(
        [(train, TensorDataset(x_train, y_train)), (val, TensorDataset(x_val, y_val))],
        batch_size=4, transform=lambda b: b.float() / 255.0,
    )  # fmt: skip
    # 13 items: 4 + 4 + 4 + 1, the third batch holding train's last 3 and val's first 1
    assert shapes == [4, 4, 4, 1]
    assert train.cached_labels().tolist() == y_train.tolist()
    assert val.cached_labels().tolist() == y_val.tolist()
    assert (train.computed, val.computed) == (7, 6)
    with torch.no_grad():
        for cache, xs in ((train, x_train), (val, x_val)):
            expected = backbone(xs.float() / 255.0)
            torch.testing.assert_close(cache.features, expected, rtol=0, atol=1e-4)


def test_caches_with_different_encoders_are_not_filled_together():
    from torch.utils.data import TensorDataset

    from cnnlab.engine.feature_cache import fill_caches

    data = TensorDataset(torch.zeros(2, 1, 28, 28), torch.zeros(2))
    a, b = FeatureCache(2, backbone=_backbone()), FeatureCache(2, backbone=_backbone())
    with pytest.raises(ValueError, match="share one encoder"):
        fill_caches([(a, data), (b, data)])
    with pytest.raises(ValueError, match="needs the backbone"):
        FeatureCache(2).fill(data)
