"""Test-time augmentation: the mean of the views' probabilities, for evaluate and predict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cnnlab.errors import ConfigError
from cnnlab.evaluation.inference import predict_logits, predict_tensor
from cnnlab.evaluation.tta import Tta, average_views, parse_tta, with_tta
from cnnlab.models import create_model


def test_average_views_is_the_log_of_the_mean_probability_by_hand():
    # view 1: logits (0, 0) -> p (1/2, 1/2); view 2: (log 3, 0) -> (3/4, 1/4); mean (5/8, 3/8)
    a = np.array([[0.0, 0.0]])
    b = np.array([[math.log(3.0), 0.0]])
    got = average_views([a, b])
    np.testing.assert_allclose(np.exp(got), [[5 / 8, 3 / 8]], rtol=1e-6)
    # a shift of one view's logits does not change its probabilities, nor the average
    np.testing.assert_allclose(average_views([a + 100.0, b]), got, rtol=1e-6)


def test_flip_views_are_the_image_and_its_left_right_mirror():
    seen = []

    def forward(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return x[:, 0, 0, :2]  # the first two pixels of the top row as logits

    x = np.arange(2 * 1 * 2 * 3, dtype=np.float32).reshape(2, 1, 2, 3)
    got = with_tta(forward, Tta.FLIP)(x)
    np.testing.assert_array_equal(seen[0], x)
    np.testing.assert_array_equal(seen[1], x[..., ::-1])
    # image 0's top row is (0, 1, 2): views' logits (0, 1) and (2, 1)
    p = [np.exp([0, 1]) / np.exp([0, 1]).sum(), np.exp([2, 1]) / np.exp([2, 1]).sum()]
    np.testing.assert_allclose(np.exp(got[0]), (p[0] + p[1]) / 2, rtol=1e-6)
    assert with_tta(forward, Tta.NONE) is forward


def test_evaluation_logits_average_the_model_over_mirrored_images():
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=4).eval()
    x, y = torch.randn(6, 1, 28, 28), torch.arange(6) % 4
    logits, _ = predict_logits(model, TensorDataset(x, y), batch_size=4, tta=Tta.FLIP)
    with torch.no_grad():
        p = model(x).softmax(1) + model(x.flip(-1)).softmax(1)
    expected = (p / 2).log()
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=0, atol=1e-4)
    plain = predict_tensor(model, x, batch_size=4)
    assert not np.allclose(plain, logits, atol=1e-3)  # the mirror changed something
    flipped = predict_tensor(model, x, batch_size=4, tta=Tta.FLIP)
    np.testing.assert_allclose(flipped, logits, atol=1e-5)


def test_unknown_tta_names_the_choices():
    assert parse_tta("flip") is Tta.FLIP
    with pytest.raises(ConfigError, match="unknown test-time augmentation 'rot90'.*none, flip"):
        parse_tta("rot90")
