"""TfSameConv2d against timm's Conv2dSame (TF "SAME" padding): outputs and gradients equal."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.layers import Conv2dSame

from cnnlab.models import create_model
from cnnlab.models.same_padding import TfSameConv2d, replace_same_convs, same_pads


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 3, 2, (0, 1)),  # out 112: (112-1)*2 + 3 - 224 = 1, the extra pixel after
        (225, 3, 2, (1, 1)),  # odd side: out 113, total 2, symmetric
        (56, 5, 2, (1, 2)),  # out 28: 54 + 5 - 56 = 3
        (57, 5, 2, (2, 2)),
        (7, 3, 1, (1, 1)),  # stride 1: always k - 1, symmetric
        (1, 3, 2, (1, 1)),  # out 1: 0 + 3 - 1 = 2
    ],
)
def test_same_pads_by_hand(size, kernel, stride, expected):
    assert same_pads(size, kernel, stride) == expected


@pytest.mark.parametrize("groups", [1, 8])  # dense (pad + conv) and depthwise (shifted kernel)
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("hw", [(16, 16), (15, 15), (16, 13), (9, 14)])
def test_same_outputs_and_gradients_as_timm(groups, kernel, hw):
    torch.manual_seed(0)
    timm_conv = Conv2dSame(8, 8, kernel, stride=2, groups=groups, bias=True)
    ours = TfSameConv2d(8, 8, kernel, stride=2, groups=groups, bias=True)
    ours.load_state_dict(timm_conv.state_dict())
    x = torch.randn(2, 8, *hw, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    a, b = timm_conv(x), ours(x2)
    assert a.shape == b.shape
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    g = torch.randn_like(a)
    a.backward(g)
    b.backward(g)
    torch.testing.assert_close(x2.grad, x.grad, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, timm_conv.weight.grad, rtol=0, atol=1e-4)
    assert ours.weight.shape == timm_conv.weight.shape  # checkpoints keep their shapes


def test_lite0_uses_it_and_matches_timms_padding_end_to_end():
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=3).eval()
    convs = [m for m in model.modules() if isinstance(m, TfSameConv2d)]
    assert len(convs) == 5  # the stem and four stride-2 depthwise convs
    assert not any(type(m) is Conv2dSame for m in model.modules())
    # the same network with timm's own Conv2dSame put back
    reference = copy.deepcopy(model)
    for name, m in list(reference.named_modules()):
        if isinstance(m, TfSameConv2d):
            back = Conv2dSame(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                              groups=m.groups, bias=m.bias is not None)  # fmt: skip
            back.load_state_dict(m.state_dict())
            parent, _, attr = name.rpartition(".")
            setattr(reference.get_submodule(parent), attr, back)
    assert replace_same_convs(model) == 0  # nothing left to replace
    for size in (224, 97):
        x = torch.randn(2, 3, size, size)
        with torch.inference_mode():
            torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-4)


def test_an_export_pads_the_input_and_computes_the_same():
    # torch.export (what the ONNX export traces) sees the input padded, not the weight: ONNX's
    # Conv then takes the lopsided padding itself; outputs equal the eager shifted kernel's
    torch.manual_seed(0)
    conv = TfSameConv2d(8, 8, 3, stride=2, groups=8, bias=True).eval()
    x = torch.randn(2, 8, 16, 16)
    program = torch.export.export(conv, (x,))
    pads = [n for n in program.graph.nodes if n.target == torch.ops.aten.pad.default]
    assert len(pads) == 1 and pads[0].args[0].name == "x"  # the input, not the weight
    assert list(pads[0].args[1]) == [0, 1, 0, 1]  # TF's (before, after) = (0, 1) on each axis
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(x), conv(x), rtol=0, atol=1e-5)
