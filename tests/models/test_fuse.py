"""Fused convolution + activation: the same outputs as the two modules, in every family."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models import create_model
from cnnlab.models.fold import inference_copy
from cnnlab.models.fuse import ConvAct, PostOp, fuse_conv_activations_, fusion_available, post_op
from cnnlab.models.same_padding import TfSameConv2d

pytestmark = pytest.mark.skipif(not fusion_available(), reason="torch built without oneDNN")

ACTIVATIONS = {  # module -> the function it computes, written independently of post_op
    "relu": (nn.ReLU(), F.relu),
    "relu6": (nn.ReLU6(), lambda t: t.clamp(0.0, 6.0)),
    "hardtanh": (nn.Hardtanh(-1.0, 2.0), lambda t: t.clamp(-1.0, 2.0)),
    "silu": (nn.SiLU(), lambda t: t * torch.sigmoid(t)),
    "hardswish": (nn.Hardswish(), lambda t: t * (t + 3).clamp(0, 6) / 6),
}


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(
    "conv",
    [
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
        dict(in_channels=6, out_channels=6, kernel_size=5, stride=2, padding=2, groups=6),
        dict(in_channels=4, out_channels=8, kernel_size=1, bias=False),
    ],
    ids=["3x3", "depthwise-5x5-stride2", "1x1-no-bias"],
)
def test_fused_pair_equals_activation_of_convolution(act, memory_format, conv):
    torch.manual_seed(0)
    module, fn = ACTIVATIONS[act]
    c = nn.Conv2d(**conv).eval().requires_grad_(False)
    with torch.no_grad():
        c.weight.mul_(8)  # outputs beyond every clamp's bounds, so each bound is exercised
    x = torch.randn(2, c.in_channels, 11, 9).contiguous(memory_format=memory_format)
    fused = ConvAct(c.to(memory_format=memory_format), module, post_op(module))
    with torch.inference_mode():
        raw = F.conv2d(x, c.weight, c.bias, c.stride, c.padding, 1, c.groups)
        expected = fn(raw)
        got = fused(x)
    assert raw.max() > 6 and raw.min() < -3  # every bound and bend of the activations crossed
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (15, 17)])
def test_tf_same_convolutions_fuse_with_their_lopsided_padding(size):
    torch.manual_seed(0)
    conv = TfSameConv2d(8, 8, 3, stride=2, groups=8, bias=True).eval().requires_grad_(False)
    x = torch.randn(2, 8, *size)
    with torch.inference_mode():
        expected = F.relu6(conv(x))
        got = ConvAct(conv, nn.ReLU6(), PostOp("hardtanh", (0.0, 6.0)))(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_convolution_subclasses_with_their_own_forward_are_not_fused():
    class Standardised(nn.Conv2d):  # computes with a transformed weight, like timm's StdConv2d
        def forward(self, x):
            w = (self.weight - self.weight.mean()) / self.weight.std()
            return F.conv2d(x, w, self.bias, self.stride, self.padding)

    model = nn.Sequential(Standardised(3, 4, 3), nn.ReLU()).eval()
    assert fuse_conv_activations_(model, torch.randn(1, 3, 8, 8)) == 0


def test_an_activation_fed_by_something_else_is_left_alone():
    # conv -> BN -> ReLU unfolded: the ReLU's input is the BatchNorm's output, not the conv's
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))
    assert fuse_conv_activations_(model.eval(), torch.randn(1, 3, 8, 8)) == 0
    assert isinstance(model[2], nn.ReLU)


# the pairs each family's inference copy fuses, counted from the architectures: every
# conv + BN + activation (BN folded first); not a residual's add + ReLU, which no conv feeds
EXPECTED_FUSED = {
    "smallcnn": 5,  # five conv-BN-ReLU
    # the stem only: each torchvision basic block calls its one ReLU module twice (after
    # conv1, after the residual add), and a module called twice is never rewritten
    "resnet18": 1,
    "efficientnet_lite0": 33,  # stem, 16 depthwise, 15 expansions, the head conv (ReLU6 each)
    # stem, 1 + 2 x 10 in the 11 inverted residuals, the last conv, and the first 1x1 conv
    # (+ ReLU) of each of the 9 squeeze-excitations
    "mobilenet_v3_small": 1 + 21 + 1 + 9,
}
SIZES = {"smallcnn": (1, 28), "efficientnet_lite0": (3, 224)}


@pytest.mark.parametrize("name", sorted(EXPECTED_FUSED))
def test_inference_copies_fuse_every_conv_activation_pair(name):
    chans, size = SIZES.get(name, (3, 64))
    torch.manual_seed(0)
    backbone = create_model(name, num_classes=3, in_chans=chans, input_size=size).backbone
    x = torch.randn(2, chans, size, size)
    fast = inference_copy(backbone, x, memory_format=torch.channels_last)
    fused = sum(isinstance(m, ConvAct) for m in fast.modules())
    assert fused == EXPECTED_FUSED[name]
    unfused = inference_copy(backbone, x, memory_format=torch.channels_last, fuse=False)
    assert not any(isinstance(m, ConvAct) for m in unfused.modules())
    with torch.inference_mode():
        expected = backbone.eval()(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * scale)


def test_under_autocast_a_fused_copy_computes_as_the_original():
    # a bf16-mixed run fills its feature cache under autocast: the fused op takes no bf16
    # inputs, so the pairs run unfused there, and the copy built there is used outside too
    torch.manual_seed(0)
    backbone = create_model("smallcnn", num_classes=3).backbone.eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.inference_mode():
        fast = inference_copy(backbone, x[:2], memory_format=torch.channels_last)
        expected = backbone(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    assert sum(isinstance(m, ConvAct) for m in fast.modules()) == EXPECTED_FUSED["smallcnn"]
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=0.05, atol=0.05)
    with torch.inference_mode():  # and in float32 the fused kernels run
        torch.testing.assert_close(fast(x), backbone(x), rtol=0, atol=1e-4)


def test_a_fused_copy_that_fails_its_check_is_rebuilt_folded_only(monkeypatch):
    # a wrong post-op (a clamp at 5 where the model's ReLU6 clamps at 6) must never reach
    # the caller
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU6()).eval()
    with torch.no_grad():
        model[0].weight.mul_(20)  # outputs well above 6
    wrong = PostOp("hardtanh", (0.0, 5.0))
    monkeypatch.setattr(
        "cnnlab.models.fuse.post_op", lambda m: wrong if isinstance(m, nn.ReLU6) else None
    )
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match="running it without fusion"):
        fast = inference_copy(model, x)
    assert not any(isinstance(m, ConvAct) for m in fast.modules())
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_fused_op_that_raises_falls_back_to_the_folded_copy(monkeypatch):
    def broken(self, x):
        raise RuntimeError("mkldnn: unsupported")

    monkeypatch.setattr(ConvAct, "forward", broken)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    fast = inference_copy(model, torch.randn(2, 3, 8, 8))
    assert not any(isinstance(m, ConvAct) for m in fast.modules())
