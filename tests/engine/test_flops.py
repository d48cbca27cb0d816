"""Training FLOPs: the meta-device count equals FlopCounterMode on a real training step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.engine.flops import flop_counter, forward_flops_per_image, train_flops_per_image
from cnnlab.models import create_model


def _real_step_flops(model: nn.Module, x: torch.Tensor, counter: FlopCounterMode) -> int:
    """One real training step (forward, loss, backward) under `counter`, per image."""
    model = copy.deepcopy(model)
    with counter:
        loss = F.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long))
        loss.backward()
    return counter.get_total_flops() // len(x)


@pytest.mark.parametrize(
    ("name", "chans", "size"),
    [
        ("smallcnn", 1, 28),
        ("smallcnn_dense", 1, 28),
        ("resnet18", 3, 32),
        ("vgg11", 3, 32),
        ("alexnet", 3, 32),
    ],
)
def test_equals_torchs_flop_counter_on_a_real_training_step(name, chans, size):
    # dense convolutions only: torch's own counter is right for these
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=chans, input_size=size).train()
    x = torch.randn(4, chans, size, size)
    expected = _real_step_flops(model, x, FlopCounterMode(display=False))
    assert train_flops_per_image(model, (chans, size, size)) == expected


@pytest.mark.parametrize(
    ("name", "chans", "size"),
    [
        ("smallcnn_dw", 1, 28),
        ("smallcnn_deep", 1, 28),
        ("mobilenet_v2", 3, 32),
        ("efficientnet_lite0", 3, 64),
    ],
)
def test_equals_the_corrected_counter_on_a_real_step_with_depthwise_convs(name, chans, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=chans, input_size=size).train()
    x = torch.randn(2, chans, size, size)
    assert train_flops_per_image(model, (chans, size, size)) == _real_step_flops(
        model, x, flop_counter()
    )


def test_smallcnn_dense_by_hand():
    # forward MACs per image: 28x28 convs 1->32 and 32->32, 14x14 32->64 and 64->64, 7x7 64->128
    macs = 28 * 28 * 9 * (1 * 32 + 32 * 32) + 14 * 14 * 9 * (32 * 64 + 64 * 64)
    macs += 7 * 7 * 9 * 64 * 128 + 128 * 10
    model = create_model("smallcnn_dense", num_classes=10)
    assert forward_flops_per_image(model, (1, 28, 28)) == 2 * macs
    # backward: the input gradient of every layer but the first (nothing needs the image's
    # gradient) and every weight gradient, each as costly as the forward
    first = 28 * 28 * 9 * 1 * 32
    assert train_flops_per_image(model, (1, 28, 28)) == 2 * (3 * macs - first)


def test_smallcnn_by_hand():
    # the default: 3x3 convs 1->16 at 28 px, 16->24 and 24->24 at 14 px, 24->40, 40->40 at 7 px
    macs = 28 * 28 * 9 * 16 + 14 * 14 * 9 * (16 * 24 + 24 * 24) + 7 * 7 * 9 * (24 * 40 + 40 * 40)
    macs += 40 * 10
    model = create_model("smallcnn", num_classes=10)
    assert forward_flops_per_image(model, (1, 28, 28)) == 2 * macs
    first = 28 * 28 * 9 * 16  # no input gradient for the image
    assert train_flops_per_image(model, (1, 28, 28)) == 2 * (3 * macs - first)
    # 17.4 MFLOP: 4 epochs of 54,000 images are 3.76 TFLOP, inside the 4 TFLOP budget
    assert 4 * 54_000 * train_flops_per_image(model, (1, 28, 28)) < 4e12


def test_smallcnn_deep_forward_by_hand():
    # a 3x3 conv 1->32 at 28 px; at 14 px three separable blocks 32->64, 64->64, 64->64; at 7 px
    # 64->128, 128->128, 128->128; each block a 3x3 per channel then a 1x1 mixing channels
    def separable(hw: int, c_in: int, c_out: int) -> int:
        return hw * hw * (9 * c_in + c_in * c_out)

    macs = 28 * 28 * 9 * 32
    macs += separable(14, 32, 64) + 2 * separable(14, 64, 64)
    macs += separable(7, 64, 128) + 2 * separable(7, 128, 128) + 128 * 10
    assert macs == 4_664_512
    model = create_model("smallcnn_deep", num_classes=10)
    assert forward_flops_per_image(model, (1, 28, 28)) == 2 * macs


def test_depthwise_weight_gradient_counted_once_per_group():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
    dw_macs = 6 * 6 * 8 * 9  # each output value: 9 MACs of its own channel
    fc_macs = 8 * 6 * 6 * 2
    # forward conv + fc, backward: fc input and weight gradients, conv weight gradient only
    expected = 2 * (dw_macs + fc_macs + 2 * fc_macs + dw_macs)
    assert train_flops_per_image(model, (8, 6, 6)) == expected
    # the same number as a real step under the corrected counter
    assert _real_step_flops(model, torch.randn(2, 8, 6, 6), flop_counter()) == expected


def test_frozen_backbone_costs_its_forward_only():
    model = create_model("smallcnn", num_classes=10)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    head = 2 * 40 * 10  # smallcnn's 40 features -> 10 classes
    fwd = forward_flops_per_image(model, (1, 28, 28))
    assert train_flops_per_image(model, (1, 28, 28)) == fwd + head  # + the head's weight grad


def test_leaves_the_model_untouched():
    model = create_model("smallcnn", num_classes=10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_flops_per_image(model, (1, 28, 28))
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm statistics and step counts too
