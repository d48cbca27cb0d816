"""Folded BatchNorm: the same features as the eval-mode original, for every family with BN."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnlab.models import create_model, get_model_info, list_models
from cnnlab.models.fold import (
    FoldError,
    LiveInferenceCopy,
    NonFiniteOutputs,
    fast_eval_copy,
    find_conv_bn_pairs,
    fold_into,
    inference_copy,
)

# the smallest model of each family that has BatchNorm (alexnet and plain VGG have none)
ONE_PER_FAMILY = {
    "smallcnn": ("smallcnn", 1, 28),
    "vgg": ("vgg11_bn", 3, 32),
    "resnet": ("resnet50", 3, 64),  # bottlenecks and a downsample branch
    "inception": ("inception_v3", 3, 75),
    "mobilenet": ("mobilenet_v3_small", 3, 64),  # hardswish, squeeze-excitation
    "efficientnet": ("efficientnet_lite0", 3, 224),  # timm BatchNormAct2d, TF-SAME convs
    "senet": ("seresnet50", 3, 64),
}


def _randomise_statistics(model: nn.Module, x: torch.Tensor | None = None, seed: int = 0) -> None:
    """Fresh BatchNorm layers are the identity (mean 0, var 1, gamma 1, beta 0): give every one
    a real affine map, as after training, so that a wrong fold cannot pass by accident.

    gamma and beta are drawn at random; the running statistics are then measured on `x` (as
    training would) so that activations stay of order 1 through 50 layers; without `x` they are
    drawn at random too (fine for shallow models)."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        c = m.num_features
        if m.affine:
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)
        m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
        m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.25)
    if x is not None:
        was = model.training
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
        model.train()
        model(x)
        for m in norms:
            m.momentum = 0.1
            # a trained network's channels keep some variance over real data; a channel
            # nearly constant over 8 random images would be scaled up to 1/sqrt(eps) = 316x
            # and amplify float rounding (folded or not) beyond any fixed tolerance
            m.running_var += 0.05
        model.train(was)


def test_every_family_with_batchnorm_is_covered():
    families = set()
    for name in list_models():
        model = create_model(name, num_classes=2, input_size=32)  # small builds are quick
        if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            families.add(get_model_info(name).family)
    assert families == set(ONE_PER_FAMILY)


@pytest.mark.parametrize("family", sorted(ONE_PER_FAMILY))
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_folded_features_equal_unfolded(family, memory_format):
    name, chans, size = ONE_PER_FAMILY[family]
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_chans=chans, input_size=size)
    x = torch.randn(4, chans, size, size)
    with torch.no_grad():
        _randomise_statistics(model.backbone, torch.randn(8, chans, size, size))
    model.train()  # as a module being trained is; the copy must not change that
    backbone = model.backbone
    fast = inference_copy(backbone, x[:2], memory_format=memory_format)
    assert model.training and backbone.training
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    left = sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert n_bn > 0 and left < n_bn
    if family != "inception":  # torchvision's Inception keeps nothing but conv+BN pairs too
        assert left == 0, f"{left} of {n_bn} BatchNorm layers not folded"
    backbone.eval()
    with torch.inference_mode():
        expected = backbone(x)
        got = fast(x.contiguous(memory_format=memory_format))
    # within 1e-4 of the features' scale: absolute for features of order 1 (all but one
    # family here); randomly initialised Inception's reach 15, and its own float32 rounding
    # (unfolded, against float64) is 6e-4 there
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * scale)
    assert not any(p.requires_grad for p in fast.parameters())
    # and folding costs no accuracy: both are as far from a float64 evaluation
    with torch.inference_mode():
        exact = copy.deepcopy(backbone).double()(x.double())
    unfolded_err = (expected.double() - exact).abs().max().item()
    folded_err = (got.double() - exact).abs().max().item()
    assert folded_err <= 2 * unfolded_err + 1e-6


def test_fold_arithmetic_by_hand():
    conv = nn.Conv2d(1, 2, 1, bias=True)
    bn = nn.BatchNorm2d(2, eps=0.0).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([1.0, 0.5]))
        bn.running_mean.copy_(torch.tensor([3.0, 0.5]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))  # std 2 and 0.5
        bn.weight.copy_(torch.tensor([1.0, 3.0]))
        bn.bias.copy_(torch.tensor([0.0, -1.0]))
    fold_into(conv, bn)
    # channel 0: scale 1/2 -> w 1, b (1 - 3)/2 + 0 = -1; channel 1: scale 6 -> w -6, b 0 - 1 = -1
    assert conv.weight.flatten().tolist() == [1.0, -6.0]
    assert conv.bias.tolist() == [-1.0, -1.0]


class _SkipsPreNorm(nn.Module):
    """The conv output feeds the BatchNorm and a skip connection: folding would change the skip,
    so no pair may be folded here."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_a_conv_output_used_elsewhere_raises_instead_of_returning_a_wrong_network():
    model = _SkipsPreNorm()
    with torch.no_grad():
        _randomise_statistics(model)
    x = torch.randn(2, 3, 8, 8)
    assert find_conv_bn_pairs(model.eval(), x) != []  # the probe alone cannot tell
    with pytest.raises(FoldError, match="changed"):
        inference_copy(model, x)


def test_shared_modules_are_not_folded():
    conv, bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)
    twice = nn.Sequential(conv, bn, conv, bn).eval()
    assert find_conv_bn_pairs(twice, torch.randn(1, 3, 4, 4)) == []


@pytest.mark.parametrize("family", ["smallcnn", "resnet", "efficientnet"])
def test_a_refreshed_live_copy_is_a_fresh_copy_of_the_trained_model(family):
    name, chans, size = ONE_PER_FAMILY[family]
    size = min(size, 64)
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_chans=chans, input_size=size)
    model.to(memory_format=torch.channels_last)
    x = torch.randn(4, chans, size, size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        _randomise_statistics(model.backbone, torch.randn(8, chans, size, size))
    model.eval()
    live = LiveInferenceCopy.build(model, x[:1], memory_format=torch.channels_last)
    with torch.inference_mode():
        stale = live.module(x)
    # a training step and new BatchNorm statistics: every folded and carried number changes
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    model(x).logsumexp(1).mean().backward()
    opt.step()
    with torch.no_grad():
        model(x + 1.0)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    live.refresh()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    fresh = inference_copy(model, x[:1], memory_format=torch.channels_last)
    with torch.inference_mode():
        got, want, unfolded = live.module(x), fresh(x), model(x)
    assert torch.equal(got, want)
    assert (got - stale).abs().max() > 1e-2  # the refresh did change the copy
    torch.testing.assert_close(got, unfolded, rtol=0, atol=1e-4 * max(1.0, unfolded.abs().max()))
    assert len(live.folds) > 0 and not any(p.requires_grad for p in live.module.parameters())


def test_a_live_copy_built_in_inference_mode_refreshes_outside_it():
    # the engine builds it inside Lightning's validation (inference mode): inference tensors
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=3, in_chans=1, input_size=12).eval()
    x = torch.randn(2, 1, 12, 12)
    with torch.inference_mode():
        live = LiveInferenceCopy.build(model, x[:1], memory_format=torch.contiguous_format)
    with torch.no_grad():
        model.head[-1].weight.add_(1.0)
    live.refresh()
    with torch.inference_mode():
        torch.testing.assert_close(live.module(x), model(x), rtol=0, atol=1e-5)


def test_a_diverged_model_is_no_folding_bug(recwarn):
    # NaN weights (a run at a far too high lr): no copy can be checked, and nothing to report
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=3, in_chans=1, input_size=12).eval()
    with torch.no_grad():
        model.backbone[0].weight.fill_(float("nan"))
    x = torch.randn(2, 1, 12, 12)
    with pytest.raises(NonFiniteOutputs):
        inference_copy(model, x[:1])
    fast = fast_eval_copy(model, x[:1], memory_format=torch.contiguous_format)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules()) > 0  # unfolded
    assert not recwarn.list
