"""Conv arithmetic: hand-computed values from the classic nets, errors, and PyTorch as an oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.arithmetic import (
    RFInfo,
    batchnorm_params,
    conv_flops,
    conv_macs,
    conv_output_shape,
    conv_output_size,
    conv_params,
    formula_conv_output,
    formula_conv_params,
    formula_linear_params,
    formula_pool_output,
    linear_params,
    pool_output_size,
    receptive_field,
)


@pytest.mark.parametrize(
    ("n", "f", "p", "s", "d", "expected"),
    [
        (227, 11, 0, 4, 1, 55),  # AlexNet conv1: (227 - 11)/4 + 1
        (224, 11, 2, 4, 1, 55),  # torchvision AlexNet conv1: floor(219/4) + 1
        (224, 3, 1, 1, 1, 224),  # VGG 3x3 with p=1 keeps the size
        (224, 7, 3, 2, 1, 112),  # ResNet stem conv: floor(229/2) + 1
        (32, 5, 0, 1, 1, 28),  # LeNet-5 C1
        (28, 3, 1, 1, 1, 28),
        (9, 3, 0, 2, 1, 4),  # the conv demo's vertical axis
        (9, 3, 0, 1, 1, 7),
        (28, 3, 2, 1, 2, 28),  # dilation 2: effective kernel 5, padding 2 keeps the size
        (10, 3, 0, 1, 4, 2),  # effective kernel 9
        (1, 1, 0, 1, 1, 1),
        (5, 5, 0, 3, 1, 1),  # the kernel fits exactly once
    ],
)
def test_conv_output_size(n: int, f: int, p: int, s: int, d: int, expected: int) -> None:
    assert conv_output_size(n, f, p, s, d) == expected


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((2, 3), "larger than the padded input"),
        ((4, 3, 0, 1, 2), "effective 5 with dilation 2"),
        ((0, 1), "input size n must be >= 1"),
        ((5, 0), "kernel size f must be >= 1"),
        ((5, 3, -1), "padding p must be >= 0"),
        ((5, 3, 0, 0), "stride s must be >= 1"),
        ((5, 3, 0, 1, 0), "dilation d must be >= 1"),
        ((5.0, 3), "must be an integer"),
        ((5, True), "must be an integer"),
    ],
)
def test_conv_output_size_errors(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        conv_output_size(*args)


def test_conv_output_shape_separate_axes() -> None:
    assert conv_output_shape((9, 9), (3, 3), stride=(2, 1)) == (4, 7)
    assert conv_output_shape((224, 224), (7, 7), (3, 3), (2, 2)) == (112, 112)
    assert conv_output_shape((10, 20), (3, 5), (1, 0), (1, 2), (2, 1)) == (8, 8)
    assert conv_output_shape((10, 20), 3) == (8, 18)  # an int means both axes
    with pytest.raises(ValueError, match="pair"):
        conv_output_shape((10, 20, 30), (3, 3))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((112, 3, 1, 2), {}, 56),  # ResNet stem max pool: 112 -> 56
        ((224, 2), {}, 112),  # VGG 2x2 pool, stride defaults to the kernel
        ((55, 3, 0, 2), {}, 27),  # AlexNet overlapping pool
        ((5, 2), {}, 2),
        ((5, 2), {"ceil_mode": True}, 3),  # the last window sticks out but starts inside
        ((6, 2, 1, 2), {"ceil_mode": True}, 4),  # last window starts at 6 < n + p = 7: kept
        ((4, 3, 1, 2), {"ceil_mode": True}, 3),  # ceil(3/2)+1 = 3, the last starts at 4 < 5
        ((5, 2, 1, 2), {"ceil_mode": True}, 3),  # ceil(5/2)+1 = 4, but the 4th starts at 6 >= 6
        ((7, 3, 0, 2, 2), {}, 2),  # dilation 2: effective kernel 5
    ],
)
def test_pool_output_size(args: tuple, kwargs: dict, expected: int) -> None:
    assert pool_output_size(*args, **kwargs) == expected


def test_pool_padding_rule() -> None:
    with pytest.raises(ValueError, match="more than half the kernel"):
        pool_output_size(8, 2, 2)


@given(
    n=st.integers(1, 20),
    f=st.integers(1, 5),
    s=st.integers(1, 4),
    d=st.integers(1, 3),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_pool_output_size_matches_torch(n: int, f: int, s: int, d: int, data) -> None:
    p = data.draw(st.integers(0, f // 2))
    ceil_mode = data.draw(st.booleans())
    if n + 2 * p < d * (f - 1) + 1:
        with pytest.raises(ValueError):
            pool_output_size(n, f, p, s, d, ceil_mode)
        return
    x = torch.zeros(1, 1, n, 1)
    y = torch.nn.functional.max_pool2d(
        x, (f, 1), (s, 1), (p, 0), dilation=(d, 1), ceil_mode=ceil_mode
    )
    assert pool_output_size(n, f, p, s, d, ceil_mode) == y.shape[2]
    if d == 1:  # avg_pool2d has no dilation but follows the same ceil rule
        y = torch.nn.functional.avg_pool2d(x, (f, 1), (s, 1), (p, 0), ceil_mode=ceil_mode)
        assert pool_output_size(n, f, p, s, 1, ceil_mode) == y.shape[2]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((3, 64, 3), 1_792),  # VGG16 conv1_1: (3·3·3 + 1)·64
        ((64, 128, 3), 73_856),  # VGG16 conv2_1
        ((32, 32, 3, 32), 320),  # depthwise 3x3 on 32 channels: (9 + 1)·32
        ((3, 96, 11), 34_944),  # AlexNet conv1 (Krizhevsky: 96 filters of 11x11x3)
        ((3, 64, 7, 1, False), 9_408),  # ResNet stem: no bias before BatchNorm
        ((64, 256, 1, 1, False), 16_384),  # 1x1 bottleneck expansion
        ((16, 32, (3, 5), 4), (3 * 5 * 4 + 1) * 32),  # rectangular, grouped
    ],
)
def test_conv_params(args: tuple, expected: int) -> None:
    assert conv_params(*args) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [((3, 64, 3), 1_792), ((32, 32, 3, 32), 320), ((16, 32, (3, 5), 4, False), 1_920)],
)
def test_conv_params_match_torch(args: tuple, expected: int) -> None:
    c_in, c_out, k, *rest = args
    groups = rest[0] if rest else 1
    bias = rest[1] if len(rest) > 1 else True
    layer = torch.nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias)
    assert sum(p.numel() for p in layer.parameters()) == expected == conv_params(*args)


def test_conv_params_errors() -> None:
    with pytest.raises(ValueError, match="groups=3 must divide both c_in=32 and c_out=64"):
        conv_params(32, 64, 3, groups=3)
    with pytest.raises(ValueError, match="c_out"):
        conv_params(32, 30, 3, groups=4)  # divides c_in but not c_out
    with pytest.raises(ValueError, match="kernel height"):
        conv_params(3, 8, (0, 3))


def test_linear_and_batchnorm_params() -> None:
    assert linear_params(4096, 1000) == 4_097_000  # VGG/AlexNet classifier
    assert linear_params(512, 10, bias=False) == 5_120
    assert batchnorm_params(64) == 128
    assert batchnorm_params(64) == sum(p.numel() for p in torch.nn.BatchNorm2d(64).parameters())
    with pytest.raises(ValueError):
        batchnorm_params(0)


def test_macs_and_flops() -> None:
    # VGG16 conv1_1 at 224: 3·3·3·64 multiply-adds at each of 224·224 positions.
    assert conv_macs(3, 64, 3, (224, 224)) == 86_704_128
    assert conv_flops(3, 64, 3, (224, 224)) == 2 * 86_704_128
    assert conv_macs(32, 32, 3, (112, 112), groups=32) == 9 * 32 * 112 * 112  # depthwise
    with pytest.raises(ValueError):
        conv_macs(3, 64, 3, (0, 224))


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "groups", "stride", "hw"),
    [(3, 8, 3, 1, 1, 16), (8, 8, 3, 8, 2, 15), (4, 6, (1, 3), 2, 1, 9)],
)
def test_conv_flops_match_torch_flop_counter(c_in, c_out, k, groups, stride, hw) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    layer = torch.nn.Conv2d(c_in, c_out, k, stride=stride, groups=groups)  # bias: not counted
    x = torch.zeros(1, c_in, hw, hw)
    with FlopCounterMode(display=False) as counter:
        y = layer(x)
    assert conv_flops(c_in, c_out, k, tuple(y.shape[2:]), groups) == counter.get_total_flops()


@pytest.mark.parametrize(
    ("layers", "rf", "jump"),
    [
        ([(3, 1), (3, 1)], 5, 1),  # two 3x3 see 5x5 (VGG's argument)
        ([(3, 1)] * 3, 7, 1),  # three 3x3 see 7x7
        ([(7, 2), (3, 2)], 11, 4),  # ResNet stem: conv 7/2 then max pool 3/2
        # AlexNet conv1, pool1, conv2, pool2, conv3-5, pool5: 195 pixels, stride 32.
        ([(11, 4), (3, 2), (5, 1), (3, 2), (3, 1), (3, 1), (3, 1), (3, 2)], 195, 32),
        # VGG16 up to pool5: 212 pixels (conv5_3 alone: 196).
        (
            [(3, 1)] * 2 + [(2, 2)] + [(3, 1)] * 2 + [(2, 2)] + ([(3, 1)] * 3 + [(2, 2)]) * 3,
            212,
            32,
        ),
        ([(3, 1, 1), (3, 1, 2), (3, 1, 4)], 15, 1),  # dilations 1, 2, 4 (Yu & Koltun)
        ([(1, 2), (1, 2)], 1, 4),  # 1x1 convs only subsample
    ],
)
def test_receptive_field(layers: list, rf: int, jump: int) -> None:
    info = receptive_field(layers)
    assert len(info) == len(layers)
    assert (info[-1].rf, info[-1].jump) == (rf, jump)


def test_receptive_field_steps_and_start() -> None:
    assert receptive_field([(3, 1), (3, 1)]) == [RFInfo(3, 1, 1.0), RFInfo(5, 1, 2.0)]
    # With 'same' padding the first unit stays centred on pixel 0.
    stem = receptive_field([(7, 2), (3, 2)], paddings=[3, 1])
    assert [(r.rf, r.jump, r.start) for r in stem] == [(7, 2, 0.0), (11, 4, 0.0)]
    # A 2x2 window is centred between pixels 0 and 1.
    assert receptive_field([(2, 2)])[0].start == 0.5
    with pytest.raises(ValueError, match="layer 1 must be"):
        receptive_field([(3, 1), (3,)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="paddings"):
        receptive_field([(3, 1)], paddings=[1, 1])


def test_receptive_field_matches_gradient_support() -> None:
    # The RF is where d(first output unit)/d(input) can be nonzero: check it with autograd.
    layers = [(3, 2, 1), (3, 1, 2), (2, 2, 1)]
    net = torch.nn.Sequential(
        *[torch.nn.Conv2d(1, 1, k, stride=s, dilation=d, bias=False) for k, s, d in layers]
    )
    for m in net:
        torch.nn.init.constant_(m.weight, 1.0)
    x = torch.zeros(1, 1, 40, 40, requires_grad=True)
    net(x)[0, 0, 0, 0].backward()
    rows = torch.nonzero(x.grad[0, 0].sum(1)).flatten()
    info = receptive_field(layers)[-1]
    assert int(rows.max() - rows.min() + 1) == info.rf
    assert float(rows.min() + rows.max()) / 2 == info.start


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((28, 3, 1, 1), "floor((28 + 2·1 − 3) / 1) + 1 = 28"),
        ((9, 3, 0, 2), "floor((9 + 2·0 − 3) / 2) + 1 = 4"),
        ((227, 11, 0, 4), "floor((227 + 2·0 − 11) / 4) + 1 = 55"),
        ((28, 3, 2, 1, 2), "floor((28 + 2·2 − 5) / 1) + 1 = 28, f_eff = 2·(3−1)+1 = 5"),
    ],
)
def test_formula_conv_output(args: tuple, expected: str) -> None:
    assert formula_conv_output(*args) == expected


def test_formula_pool_output() -> None:
    assert formula_pool_output(112, 3, 1, 2) == "floor((112 + 2·1 − 3) / 2) + 1 = 56"
    assert formula_pool_output(5, 2, ceil_mode=True) == "ceil((5 + 2·0 − 2) / 2) + 1 = 3"
    dropped = formula_pool_output(5, 2, 1, 2, ceil_mode=True)
    assert dropped == "ceil((5 + 2·1 − 2) / 2) + 1 − 1 (last window would start in the padding) = 3"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((64, 128, 3), "(3·3·64 + 1)·128 = 73,856"),
        ((32, 32, 3, 32), "(3·3·32/32 + 1)·32 = 320"),
        ((3, 64, 7, 1, False), "(7·7·3)·64 = 9,408"),
        ((16, 32, (1, 3)), "(1·3·16 + 1)·32 = 1,568"),
    ],
)
def test_formula_conv_params(args: tuple, expected: str) -> None:
    assert formula_conv_params(*args) == expected


def test_formula_linear_params() -> None:
    assert formula_linear_params(4096, 1000) == "(4096 + 1)·1000 = 4,097,000"
    assert formula_linear_params(512, 10, bias=False) == "(512)·10 = 5,120"


def test_formula_strings_are_ascii_except_dot_and_minus() -> None:
    text = formula_conv_output(28, 3, 2, 1, 2) + formula_conv_params(32, 32, 3, 32)
    assert set(text) - set(map(chr, range(128))) <= {"·", "−"}
