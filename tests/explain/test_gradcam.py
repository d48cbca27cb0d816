"""Grad-CAM / Grad-CAM++: the arithmetic against closed forms, the target layer of every
family, the two cases hook-based tools get wrong, and a map that finds the object."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.explain import cam, find_target_layer
from cnnlab.explain.gradcam import gradcampp_weights
from cnnlab.models import create_model, get_model_info, list_models


def _smallcnn(classes=3, seed=0):
    torch.manual_seed(seed)
    model = create_model("smallcnn", num_classes=classes, in_chans=1, input_size=28).eval()
    for m in model.modules():  # random BN statistics, so the maps are not trivially uniform
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def _last_stage(model) -> nn.Module:
    """The backbone up to its global pooling: the last conv block's output, (N, 128, 7, 7)."""
    layers = list(model.backbone)
    pool = next(i for i, m in enumerate(layers) if isinstance(m, nn.AdaptiveAvgPool2d))
    return nn.Sequential(*layers[:pool])


def _normalise(maps: torch.Tensor, size) -> np.ndarray:
    up = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    peak = up.amax(dim=(1, 2), keepdim=True)
    return (up / peak).numpy()


def test_gradcam_of_a_gap_linear_head_is_the_class_activation_map():
    # With global average pooling and a linear head, d logit_c / d A_k(i,j) = W[c,k] / (h*w),
    # so Grad-CAM is relu(sum_k W[c,k] A_k), normalised: CAM (Zhou et al. 2016), no autograd.
    model = _smallcnn()
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        acts = _last_stage(model)(x)  # the last conv block's ReLU output, (4, 128, 7, 7)
        w = model.head[-1].weight  # (3, 128)
        raw = torch.relu(torch.einsum("nkhw,ck->nchw", acts, w))  # (4, 3, 7, 7)
    evidence = raw.amax(dim=(2, 3)) > 0
    assert evidence.any(dim=1).all() and not evidence.all()  # both cases below occur
    for c in range(3):
        got = cam(model, x, c, "gradcam")
        assert got.shape == (4, 28, 28)
        for i in range(4):
            if evidence[i, c]:
                expected = _normalise(raw[i, c][None], (28, 28))[0]
                np.testing.assert_allclose(got[i], expected, atol=1e-5)
            else:  # no positive evidence anywhere: an all-zero map, not a division by zero
                assert not got[i].any()


def test_gradcampp_matches_the_paper_formula_for_a_constant_gradient():
    model = _smallcnn()
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        acts = _last_stage(model)(x)[0].double().numpy()  # (128, 7, 7)
        g = (model.head[-1].weight[1].double().numpy() / 49.0)[:, None, None]  # dS/dA, constant
    g = np.broadcast_to(g, acts.shape)
    alpha = g**2 / (2 * g**2 + acts.sum(axis=(1, 2), keepdims=True) * g**3)
    weights = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))  # eq. 19 of arXiv:1710.11063
    raw = np.maximum((weights[:, None, None] * acts).sum(0), 0)
    expected = _normalise(torch.from_numpy(raw)[None].float(), (28, 28))[0]
    np.testing.assert_allclose(cam(model, x[0], 1, "gradcam++"), expected, atol=1e-5)


def test_gradcampp_weights_are_zero_where_the_gradient_is():
    acts = torch.ones(1, 2, 2, 2)
    grads = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[1.0, -1.0], [0.0, 2.0]]]])
    w = gradcampp_weights(acts, grads)
    # channel 1: sum(A) = 4; alpha = g^2 / (2 g^2 + 4 g^3): g=1 -> 1/6, g=2 -> 4/40; relu(g)
    assert w[0, 0].item() == 0.0
    assert w[0, 1].item() == pytest.approx(1 / 6 * 1 + 0.1 * 2)


# One model per family with the map Grad-CAM should use, derived by hand from the
# architectures at 32 px (smallcnn at 28): the last conv stage, before any pooling.
EXPECTED_LAYER = {
    "smallcnn": ("backbone.16", (40, 7, 7)),  # ReLU of the last conv, at 7 px
    "alexnet": ("backbone.features.11", (256, 7, 7)),  # relu5, before pool5
    "alexnet_paper": ("backbone.features.relu5", (256, 7, 7)),
    "vgg16": ("backbone.features.29", (512, 2, 2)),  # relu5_3, before pool5
    "resnet18": ("backbone.layer4", (512, 4, 4)),
    "seresnet50": ("backbone.layer4", (2048, 4, 4)),
    "inception_v3": ("backbone.Mixed_7c", (2048, 2, 2)),
    "mobilenet_v2": ("backbone.features", (1280, 2, 2)),
    "mobilenet_v3_small": ("backbone.features", (576, 2, 2)),
    "efficientnet_lite0": ("backbone.bn2", (1280, 2, 2)),  # conv_head's BN + ReLU6
}


def _model(name, seed=0):
    info = get_model_info(name)
    size = 28 if name == "smallcnn" else 32
    torch.manual_seed(seed)
    model = create_model(name, num_classes=4, in_chans=info.in_chans, input_size=size)
    return model.eval(), (info.in_chans, size, size)


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYER))
def test_the_target_is_the_last_conv_stage(name):
    model, shape = _model(name)
    layer = find_target_layer(model, shape)
    assert (layer.name, layer.shape) == EXPECTED_LAYER[name]
    assert model.get_submodule(layer.name) is layer.module


@pytest.mark.parametrize("name", list_models())
def test_every_model_frozen_with_inplace_relus_gives_the_plain_models_map(name):
    model, shape = _model(name)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    # every class for both images in one batch: a random model has no positive evidence for
    # some classes (an all-zero map), but not for all of them
    xs, classes = torch.cat([x] * 4), [c for c in range(4) for _ in range(2)]
    plain = cam(model, xs, classes)
    # the two failure cases of hook-based tools: a frozen backbone and in-place activations
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True
    with torch.inference_mode():  # and called from inference code
        frozen = cam(model, xs, classes)
        plus = cam(model, xs, classes, "gradcam++")
    assert frozen.shape == plus.shape == (8, shape[1], shape[2])
    np.testing.assert_allclose(frozen, plain, atol=1e-5)
    for maps in (frozen, plus):
        assert np.isfinite(maps).all() and maps.min() >= 0
        peaks = maps.max(axis=(1, 2))
        assert np.all((peaks == 0) | np.isclose(peaks, 1)) and (peaks > 0).any()
    assert all(p.grad is None for p in model.parameters())  # cam() leaves training state alone


def test_cam_leaves_a_training_model_in_training_mode_and_checks_its_inputs():
    model = _smallcnn().train()
    cam(model, torch.randn(1, 28, 28), 0)
    assert model.training
    with pytest.raises(ConfigError, match="gradcam"):
        cam(model, torch.randn(1, 28, 28), 0, "scorecam")
    with pytest.raises(ConfigError, match="one per image"):
        cam(model, torch.randn(2, 1, 28, 28), [0, 1, 2])
    with torch.inference_mode():
        frozen_in_inference = _smallcnn().to(torch.float64)  # weights are inference tensors
    with pytest.raises(ConfigError, match="outside inference mode"):
        cam(frozen_in_inference, torch.randn(1, 28, 28), 0)
    with pytest.raises(ConfigError, match="no convolutional feature map"):
        find_target_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2, 2))


# --- does the map point at the evidence? ----------------------------------------------------


def _plus(img, r, c):  # a 7x7 plus sign, bars 3 px wide
    img[r : r + 7, c + 2 : c + 5] = 1.0
    img[r + 2 : r + 5, c : c + 7] = 1.0


def _square(img, r, c):  # a 5x5 square in a 7x7 box
    img[r + 1 : r + 6, c + 1 : c + 6] = 1.0


def _scenes(n, rng):
    """28x28 noise with two objects, one in each half (side chosen at random): class 1 has a
    plus sign and a square, class 0 two squares. Only the plus sign carries the class."""
    x = rng.normal(0, 0.1, (n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 2, n)
    boxes = np.zeros((n, 2, 2), dtype=int)  # top-left of (the class object, the square)
    for i in range(n):
        a = (rng.integers(1, 21), rng.integers(1, 7))
        b = (rng.integers(1, 21), rng.integers(15, 21))
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        (_plus if y[i] else _square)(x[i, 0], *a)
        _square(x[i, 0], *b)
        boxes[i] = (a, b)
    return torch.from_numpy(x), torch.from_numpy(y), boxes


def _box_mask(r, c, margin=2):
    mask = np.zeros((28, 28), dtype=bool)
    mask[max(r - margin, 0) : r + 7 + margin, max(c - margin, 0) : c + 7 + margin] = True
    return mask


def test_the_map_highlights_the_region_that_carries_the_class():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # smallcnn_dense: five full 3x3 convs localise the plus sign on this tiny task (peak on it
    # in every image). The depthwise default solves it too, but from evidence spread over the
    # background (peak on the plus in 8% of images), which would test the model, not Grad-CAM.
    model = create_model("smallcnn_dense", num_classes=2, in_chans=1, input_size=28)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(60):
        x, y, _ = _scenes(64, rng)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y, boxes = _scenes(200, np.random.default_rng(1))
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.95  # it learned the task
    pos = torch.nonzero(y == 1)[:, 0].tolist()
    plus = [_box_mask(*boxes[i][0]) for i in pos]  # the plus sign's box, 2 px around it
    square = [_box_mask(*boxes[i][1]) for i in pos]  # the distractor's
    area = np.mean([m.mean() for m in plus])  # ~0.14 of the image
    for method in ("gradcam", "gradcam++"):
        heat = cam(model, x[pos], 1, method)
        on_plus = np.mean([h[m].sum() / h.sum() for h, m in zip(heat, plus, strict=True)])
        on_square = np.mean([h[m].sum() / h.sum() for h, m in zip(heat, square, strict=True)])
        peak = np.mean([m.flat[h.argmax()] for h, m in zip(heat, plus, strict=True)])
        # the 7x7 map is blurred by the upsampling, so half the mass on 14% of the pixels
        assert on_plus > 2.5 * area and on_plus > 0.35, (method, on_plus, area)
        assert on_square < 0.1, (method, on_square)
        assert peak > 0.9, (method, peak)
