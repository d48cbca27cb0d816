"""The summary table: hand-checked formulas on a tiny net, totals against FlopCounterMode."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.arithmetic import conv_flops
from cnnlab.models import create_model
from cnnlab.models.summary import ModelSummary, count_flops, layer_formulas, summarize


def tiny_net() -> nn.Sequential:
    # Non-square input (8×10) and a non-square kernel/stride, so every formula shows both axes.
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 8×10 -> 8×10, (3·3·1 + 1)·4 = 40 params
        nn.ReLU(),
        nn.MaxPool2d(2),  # -> 4×5
        nn.Conv2d(4, 8, (3, 5), stride=(1, 2), bias=False),  # -> 2×1, 3·5·4·8 = 480 params
        nn.Flatten(),  # -> 16
        nn.Linear(16, 3),  # (16 + 1)·3 = 51 params
    )


@pytest.fixture(scope="module")
def tiny() -> ModelSummary:
    return summarize(tiny_net(), (1, 8, 10))


def test_rows_by_hand(tiny: ModelSummary) -> None:
    assert [r.name for r in tiny.rows] == ["0", "1", "2", "3", "4", "5"]
    assert [r.type for r in tiny.rows] == [
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "Flatten",
        "Linear",
    ]
    assert [r.output_shape for r in tiny.rows] == [
        (4, 8, 10),
        (4, 8, 10),
        (4, 4, 5),
        (8, 2, 1),
        (16,),
        (3,),
    ]
    assert [r.params for r in tiny.rows] == [40, 0, 0, 480, 0, 51]
    # 2 FLOPs per MAC: conv1 9·1 MACs for each of 4·8·10 outputs, conv2 15·4 for 8·2·1, fc 16·3.
    assert [r.flops for r in tiny.rows] == [2 * 9 * 320, 0, 0, 2 * 60 * 16, 0, 2 * 48]
    assert tiny.total_flops == 5760 + 1920 + 96 and tiny.total_macs == 3888
    assert tiny.total_params == tiny.trainable_params == 571 and tiny.non_trainable_params == 0


def test_formula_strings_by_hand(tiny: ModelSummary) -> None:
    conv1, _, pool, conv2, _, fc = tiny.rows
    assert conv1.output_formula == (
        "H floor((8 + 2·1 − 3) / 1) + 1 = 8; W floor((10 + 2·1 − 3) / 1) + 1 = 10"
    )
    assert conv1.params_formula == "(3·3·1 + 1)·4 = 40"
    assert pool.output_formula == (
        "H floor((8 + 2·0 − 2) / 2) + 1 = 4; W floor((10 + 2·0 − 2) / 2) + 1 = 5"
    )
    assert pool.params_formula == ""
    assert conv2.output_formula == (
        "H floor((4 + 2·0 − 3) / 1) + 1 = 2; W floor((5 + 2·0 − 5) / 2) + 1 = 1"
    )
    assert conv2.params_formula == "(3·5·4)·8 = 480"
    assert fc.params_formula == "(16 + 1)·3 = 51"


def test_square_formulas_show_one_axis() -> None:
    out, params = layer_formulas(nn.Conv2d(64, 128, 3, padding=1), (28, 28))
    assert out == "floor((28 + 2·1 − 3) / 1) + 1 = 28"
    assert params == "(3·3·64 + 1)·128 = 73,856"
    out, _ = layer_formulas(nn.MaxPool2d(3, 2, ceil_mode=True), (6, 6))
    assert out.startswith("ceil((6 + 2·0 − 3) / 2) + 1") and out.endswith("= 3")
    out, params = layer_formulas(nn.Conv2d(32, 32, 3, padding="same", groups=32), (14, 14))
    assert out == "'same' padding keeps 14×14" and params == "(3·3·32/32 + 1)·32 = 320"


def test_totals_memory_and_size(tiny: ModelSummary) -> None:
    outputs = 320 + 320 + 80 + 16 + 16 + 3
    assert tiny.activation_bytes == 4 * outputs
    assert tiny.param_bytes == 4 * 571 and tiny.model_size_mb == pytest.approx(571 * 4 / 1e6)


def test_text_table_renders(tiny: ModelSummary) -> None:
    text = tiny.to_text(width=100)
    lines = text.splitlines()
    assert lines[0].startswith('Model: "Sequential"')
    assert "Layer (type)" in text and "Output shape" in text and "Param #" in text
    assert "0 (Conv2d)" in text and "(N, 4, 8, 10)" in text
    assert "params: (3·3·1 + 1)·4 = 40" in text
    assert "Total params: 571" in text and "Non-trainable params: 0" in text
    assert all(len(line) <= 100 for line in lines)
    header = next(line for line in lines if line.startswith("Layer (type)"))
    row = next(line for line in lines if line.startswith("0 (Conv2d)"))
    assert len(header) == len(row)  # right-aligned number columns end together
    assert all(len(line) <= 60 for line in tiny.to_text(width=60).splitlines())
    assert str(tiny) == tiny.to_text()


def test_to_dict_is_json(tiny: ModelSummary) -> None:
    d = json.loads(json.dumps(tiny.to_dict()))
    assert d["total_flops"] == tiny.total_flops and d["total_params"] == 571
    assert d["rows"][0]["output_shape"] == [4, 8, 10] and d["rows"][0]["params"] == 40


def test_depth_groups_rows_and_keeps_totals() -> None:
    model = create_model("smallcnn", num_classes=10)
    leaves = summarize(model, (1, 28, 28))
    top = summarize(model, (1, 28, 28), depth=1)
    assert [r.name for r in top.rows] == ["backbone", "head"]
    assert sum(r.flops for r in top.rows) == top.total_flops == leaves.total_flops
    assert sum(r.params for r in top.rows) == top.total_params
    assert top.activation_bytes == leaves.activation_bytes  # always counted on leaves


def _flop_counter(model: nn.Module, shape: tuple[int, int, int]) -> int:
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *shape, device=device))
    return counter.get_total_flops()


CASES = [("smallcnn", 28, "cpu"), ("resnet18", 32, "cpu"), ("mobilenet_v2", 64, "cpu")]
CASES += [("resnet18", 224, "meta"), ("vgg16", 32, "meta"), ("vgg16", 224, "meta")]
CASES += [("mobilenet_v2", 224, "meta"), ("inception_v3", 299, "meta")]


@pytest.mark.parametrize(("name", "size", "device"), CASES)
def test_flops_agree_with_flop_counter(name: str, size: int, device: str) -> None:
    with torch.device(device):
        model = create_model(name, num_classes=10, input_size=size)
    shape = (_in_chans(model), size, size)
    s = summarize(model, shape)
    reference = _flop_counter(model, shape)
    assert s.total_flops == pytest.approx(reference, rel=0.01)
    assert sum(r.flops for r in s.rows) == pytest.approx(reference, rel=0.01)
    assert count_flops(model, shape) == reference
    assert s.total_params == sum(p.numel() for p in model.parameters())
    # Independent of FlopCounterMode: every conv row against the arithmetic module's count.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    conv_rows = [r for r in s.rows if r.type == "Conv2d"]
    assert len(conv_rows) == len(convs)
    for m, r in zip(convs, conv_rows, strict=True):
        expected = conv_flops(
            m.in_channels, m.out_channels, m.kernel_size, r.output_shape[1:], m.groups
        )
        assert r.flops == expected, r.name


def _in_chans(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


def test_summary_restores_mode_and_rng() -> None:
    model = create_model("smallcnn", num_classes=10).train()
    state = torch.get_rng_state()
    summarize(model, (1, 28, 28))
    count_flops(model, (1, 28, 28))
    assert model.training and torch.equal(state, torch.get_rng_state())
    assert not model.backbone[0]._forward_hooks and not model.backbone[0]._forward_pre_hooks


def test_reused_module_params_counted_once() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x))

    s = summarize(Twice(), (2, 5, 5))
    assert [r.params for r in s.rows] == [38, 0]
    assert [r.flops for r in s.rows] == [2 * 18 * 50] * 2 and s.notes == []


def test_frozen_params_are_non_trainable() -> None:
    model = tiny_net()
    model[0].requires_grad_(False)
    s = summarize(model, (1, 8, 10))
    assert s.trainable_params == 531 and s.non_trainable_params == 40


def test_cli_summary_takes_the_class_count_from_context_and_states_the_variant(capsys):
    from cnnlab.cli import main

    assert main(["summary", "smallcnn"]) == 0
    out = capsys.readouterr().out
    # smallcnn is made for Fashion-MNIST: its head has 10 outputs unless --classes says more
    ten = sum(p.numel() for p in create_model("smallcnn", num_classes=10).parameters())
    assert f"Total params: {ten:,}" in out and "Classes: 10" in out
    assert main(["summary", "resnet18", "--input", "32"]) == 0
    out = capsys.readouterr().out
    assert "Variant: CIFAR-style stem" in out and "Classes: 1000" in out
    # torchvision's 11,689,512 less conv1's 7x7 -> 3x3 change (3 in, 64 out channels)
    assert f"Total params: {11_689_512 - 3 * 64 * (7 * 7 - 3 * 3):,}" in out
