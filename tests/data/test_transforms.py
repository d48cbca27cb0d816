from __future__ import annotations

import numpy as np
import pytest
import torch
from imagetree import pixels
from torchvision.transforms import v2

from cnnlab.data import transforms as T
from cnnlab.errors import ConfigError
from cnnlab.models.spec import PreprocessSpec


def spec(c: int = 3, size: int = 16, crop_pct: float = 1.0) -> PreprocessSpec:
    return PreprocessSpec((c, size, size), (0.5,) * c, (0.25,) * c, crop_pct=crop_pct)


@pytest.mark.parametrize(
    ("size", "crop_pct", "short"), [(224, 0.875, 256), (224, 1.0, 224), (32, 0.9, 35)]
)
def test_resize_size(size, crop_pct, short):
    assert T.resize_size(spec(size=size, crop_pct=crop_pct)) == short


def test_eval_transform_is_a_center_crop_of_the_cached_array():
    s = spec(size=16, crop_pct=0.8)  # cached shorter side: 20
    arr = pixels(20, 31, 3, seed=1)  # (H, W, C) as the cache holds it
    out = T.eval_transform(s)(T.to_tensor(arr))
    top, left = 2, 8  # torchvision: round((20 - 16) / 2), round((31 - 16) / 2) = round(7.5)
    crop = torch.from_numpy(arr[top : top + 16, left : left + 16]).permute(2, 0, 1)
    expected = (crop.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("preset", T.PRESETS)
@pytest.mark.parametrize("c", [1, 3])
def test_presets_give_normalised_float_crops(preset, c):
    t = T.build_transform(spec(c, 16), preset, train=True)
    torch.manual_seed(0)
    for seed in range(8):
        x = T.to_tensor(pixels(20, 27, c, seed=seed))
        y = t(x)
        assert y.shape == (c, 16, 16) and y.dtype == torch.float32
        assert y.min() >= -2.0 - 1e-6 and y.max() <= 2.0 + 1e-6  # (0 - .5)/.25 .. (1 - .5)/.25


def test_training_preset_is_random_but_seedable():
    t = T.build_transform(spec(3, 16), "strong", train=True)
    x = T.to_tensor(pixels(20, 27, 3, seed=3))
    torch.manual_seed(5)
    a = t(x)
    torch.manual_seed(5)
    assert torch.equal(t(x), a)
    assert not torch.equal(t(x), a)


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean: strong"):
        T.build_transform(spec(), "strnog")


def test_measure_mean_std_matches_numpy():
    arrays = [pixels(10 + i, 12, 3, seed=i) for i in range(5)]
    mean, std = T.measure_mean_std(arrays)
    flat = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.float64) / 255
    np.testing.assert_allclose(mean, flat.mean(0), atol=1e-4)
    np.testing.assert_allclose(std, flat.std(0), atol=1e-4)
    # A constant channel does not give a zero std (that would divide by zero).
    _, std = T.measure_mean_std([np.full((8, 8, 1), 7, np.uint8)])
    assert std == (round(1 / 255, 4),)


def test_sample_seed_is_a_pure_function():
    assert T.sample_seed(0, 1, 2) == T.sample_seed(0, 1, 2)
    seeds = {T.sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 450 and all(0 <= s < 2**63 for s in seeds)


def test_to_float_normalize_matches_torchvision_normalize():
    s = spec(3, 16)
    x = torch.from_numpy(pixels(16, 16, 3, seed=4)).permute(2, 0, 1)
    ref = v2.Normalize(s.mean, s.std)(v2.ToDtype(torch.float32, scale=True)(x))
    torch.testing.assert_close(T.ToFloatNormalize(s)(x), ref, atol=1e-5, rtol=0)
    batch = torch.stack([x, x])
    assert torch.equal(T.ToFloatNormalize(s)(batch)[1], T.ToFloatNormalize(s)(x))


def test_rrc_box_stays_inside_and_falls_back_to_a_center_crop():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        u = torch.rand(23, generator=gen).tolist()
        top, left, h, w = T.rrc_box(30, 50, u)
        assert top >= 0 and top + h <= 30 and left >= 0 and left + w <= 50 and h > 0 and w > 0
    # No try fits (every area draw is 100% with an extreme ratio): the central crop.
    assert T.rrc_box(10, 100, [1.0, 0.0] * 10 + [0.5, 0.5, 0.5]) == (0, 43, 10, 13)
