"""Contract tests over every registered model, plus the paper facts of AlexNet, VGG and ResNet.

Shape-only checks (parameter counts, variants, in_chans, reset_classifier) build on the meta
device: no weights are allocated or initialised, so the whole zoo costs seconds. Real tensors
are used where values matter: a train step at 32 px and a native-size forward.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import create_model, get_model_info, list_models
from cnnlab.models.backbones import inception_final_side
from cnnlab.models.base import CnnClassifier

MODELS = list_models()
OURS = {"alexnet", "vgg", "resnet", "inception", "mobilenet", "senet"}  # families in this issue
SLOW_NATIVE = {"senet154", "vgg19", "vgg19_bn", "inception_v3"}
SLOW_TRAIN = {"senet154"}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(name: str, **kw) -> CnnClassifier:
    with torch.device("meta"):
        return create_model(name, **kw)


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TRAIN else n for n in MODELS]
)
def test_train_step_at_32px_with_2_and_10_classes(name: str) -> None:
    torch.manual_seed(0)
    in_chans = get_model_info(name).in_chans
    model = create_model(name, num_classes=2, input_size=32)
    assert isinstance(model, CnnClassifier)
    model.train()  # batch 2: BatchNorm needs more than one value per channel
    features = model.forward_features(torch.randn(2, in_chans, 32, 32))
    assert features.shape == (2, model.num_features)
    logits2 = model.forward_head(features)
    # The backbone does not depend on the class count: one backward through both heads covers
    # 2 and 10 classes at the cost of one (senet154 at 32 px is 13 GFLOPs per image).
    model.reset_classifier(10)
    logits10 = model.forward_head(features)
    assert logits2.shape == (2, 2) and logits10.shape == (2, 10)
    (logits2.logsumexp(1).mean() + logits10.logsumexp(1).mean()).backward()
    grad = _first_conv(model).weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.head[1].weight.grad is not None


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_NATIVE else n for n in MODELS],
)
def test_native_size_forward(name: str) -> None:
    info = get_model_info(name)
    model = create_model(name, num_classes=10).eval()
    assert model.variant == "", "the native size must be the paper's network"
    with torch.no_grad():
        out = model(torch.randn(1, info.in_chans, info.default_input, info.default_input))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_and_head_shape(name: str) -> None:
    x = torch.zeros(2, get_model_info(name).in_chans, 32, 32, device="meta")
    model = _meta(name, num_classes=10, input_size=32)
    head = model.head
    assert isinstance(head[0], nn.Dropout) and isinstance(head[1], nn.Linear)
    assert model(x).shape == (2, 10)
    with torch.device("meta"):
        model.reset_classifier(5)
    assert model.num_classes == 5 and model.head[0].p == head[0].p
    assert model(x).shape == (2, 5)


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("name", MODELS)
def test_small_inputs_and_one_channel(name: str, size: int) -> None:
    model = _meta(name, num_classes=3, input_size=size, in_chans=1)
    assert _first_conv(model).in_channels == 1
    assert model(torch.zeros(2, 1, size, size, device="meta")).shape == (2, 3)
    if get_model_info(name).family in OURS and size < 64:
        assert model.variant.endswith(".") and len(model.variant) > 20


EXACT_PARAMS = [  # published totals at 224x224 (AlexNet paper: 227) and 1000 classes
    ("alexnet", 224, 61_100_840),
    ("alexnet_paper", 227, 62_378_344),
    ("vgg16", 224, 138_357_544),
    ("vgg19", 224, 143_667_240),
    ("resnet18", 224, 11_689_512),
    ("resnet34", 224, 21_797_672),
    ("resnet50", 224, 25_557_032),
    ("resnet101", 224, 44_549_160),
    ("resnet152", 224, 60_192_808),
    ("mobilenet_v2", 224, 3_504_872),
    ("inception_v3", 299, 23_834_568),  # torchvision's 27,161,264 minus the aux classifier
    ("seresnet50", 224, 28_088_024),
    ("senet154", 224, 115_088_984),
]


@pytest.mark.parametrize(("name", "size", "expected"), EXACT_PARAMS)
def test_published_parameter_counts_exactly(name: str, size: int, expected: int) -> None:
    assert _params(_meta(name, num_classes=1000, input_size=size)) == expected


@pytest.mark.parametrize("name", [n for n in MODELS if get_model_info(n).published_params])
def test_registry_published_params_match_the_build(name: str) -> None:
    info = get_model_info(name)
    model = _meta(name, num_classes=1000)
    assert round(_params(model) / 1e6, 1) == pytest.approx(info.published_params)


def test_alexnet_paper_is_62_4m_only_at_227() -> None:
    # At 224 px the final map is 5×5, not 6×6: fc6 shrinks and the variant says why.
    model = _meta("alexnet_paper", num_classes=1000, input_size=224)
    assert _params(model) == 62_378_344 - (9216 - 6400) * 4096
    assert "6,400" in model.variant


def test_alexnet_paper_layers() -> None:
    f = _meta("alexnet_paper", num_classes=1000).backbone.features
    assert (f.conv1.kernel_size, f.conv1.stride, f.conv1.out_channels) == ((11, 11), (4, 4), 96)
    assert (f.conv2.kernel_size, f.conv2.padding, f.conv2.out_channels) == ((5, 5), (2, 2), 256)
    assert [f.conv3.out_channels, f.conv4.out_channels, f.conv5.out_channels] == [384, 384, 256]
    assert (f.pool1.kernel_size, f.pool1.stride) == (3, 2)  # overlapping pooling
    assert isinstance(f.lrn1, nn.LocalResponseNorm) and isinstance(f.lrn2, nn.LocalResponseNorm)


def test_alexnet_paper_init() -> None:
    torch.manual_seed(0)
    model = create_model("alexnet_paper", num_classes=10, input_size=32, init="paper", fc_width=512)
    f, b = model.backbone.features, model.backbone
    for layer in (f.conv2, f.conv4, f.conv5, b.fc6, b.fc7):
        assert torch.all(layer.bias == 1)
    for layer in (f.conv1, f.conv3, model.head[1]):
        assert torch.all(layer.bias == 0)
    for layer in (f.conv2, f.conv3, b.fc6, b.fc7):
        assert layer.weight.mean().abs() < 1e-3
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_vgg_paper_init() -> None:
    torch.manual_seed(0)
    model = create_model("vgg11_bn", num_classes=10, input_size=32, init="paper", fc_width=256)
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) == 8 + 3
    for layer in layers[1:]:  # conv1 has only 1,728 weights: too few for a tight std
        assert torch.all(layer.bias == 0)
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(bn.weight == 1) for bn in bns)


def test_vgg16_layers_and_dropout() -> None:
    model = _meta("vgg16", num_classes=1000)
    convs = [m for m in model.backbone.features if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.backbone.features if isinstance(m, nn.MaxPool2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128] + [256] * 3 + [512] * 6
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs) and len(pools) == 5
    assert model.backbone.fc6.in_features == 25_088 and model.num_features == 4096
    assert model.backbone.drop6.p == 0.5 and model.head[0].p == 0.5


@pytest.mark.parametrize(
    ("size", "fc6_in", "pools"), [(224, 25_088, 5), (32, 512, 5), (28, 512, 4), (64, 2048, 5)]
)
def test_vgg_small_input_variant(size: int, fc6_in: int, pools: int) -> None:
    model = _meta("vgg11", num_classes=10, input_size=size)
    assert model.backbone.fc6.in_features == fc6_in
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.backbone.features) == pools
    assert (model.variant == "") == (size == 224)


def test_vgg_large_input_keeps_fc6_width() -> None:
    model = _meta("vgg11", num_classes=10, input_size=256)
    assert model.backbone.fc6.in_features == 25_088 and "adaptive average pool 8×8" in model.variant


def test_fc_width_override_and_unknown_option() -> None:
    assert _meta("vgg11", num_classes=10, input_size=32, fc_width=128).num_features == 128
    with pytest.raises(ConfigError, match="fc_width"):
        _meta("vgg11", num_classes=10, input_size=32, fc_wdth=128)
    with pytest.raises(ConfigError, match="resnet18"):
        _meta("resnet18", num_classes=10, input_size=32, fc_width=128)


def test_alexnet_paper_small_variants() -> None:
    m32 = _meta("alexnet_paper", num_classes=10, input_size=32)
    assert m32.backbone.features.conv1.kernel_size == (3, 3)
    assert m32.backbone.fc6.in_features == 256 * 3 * 3
    m64 = _meta("alexnet_paper", num_classes=10, input_size=64)
    assert m64.backbone.features.conv1.kernel_size == (11, 11)
    assert not hasattr(m64.backbone.features, "pool5") and "dropped" in m64.variant


def test_resnet_cifar_stem() -> None:
    small = _meta("resnet18", num_classes=10, input_size=32)
    assert small.backbone.conv1.kernel_size == (3, 3) and small.backbone.conv1.stride == (1, 1)
    assert isinstance(small.backbone.maxpool, nn.Identity) and "CIFAR-style" in small.variant
    native = _meta("resnet18", num_classes=10, input_size=64)
    assert native.backbone.conv1.kernel_size == (7, 7) and native.variant == ""


@pytest.mark.parametrize(
    ("n", "stem", "side"),
    [(299, (2, True, True), 8), (75, (2, True, True), 1), (74, (2, True, True), 0),
     (32, (1, False, True), 2), (21, (1, False, True), 1), (20, (1, False, False), 2)],
)  # fmt: skip
def test_inception_final_side(n: int, stem: tuple, side: int) -> None:
    assert inception_final_side(n, *stem) == side


@pytest.mark.parametrize("size", [16, 20, 74])
def test_inception_small_variants_run(size: int) -> None:
    model = _meta("inception_v3", num_classes=10, input_size=size)
    assert model(torch.zeros(2, 3, size, size, device="meta")).shape == (2, 10)
    assert model.backbone.Conv2d_1a_3x3.conv.stride == (1, 1)
    assert "Conv2d_1a" in model.variant and "(input < 75 px)" in model.variant


def test_too_small_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="16"):
        _meta("resnet18", num_classes=10, input_size=8)


def test_heads_take_the_library_dropout() -> None:
    assert _meta("mobilenet_v2").head[0].p == 0.2
    assert _meta("mobilenet_v3_large").head[0].p == 0.2
    assert _meta("inception_v3").head[0].p == 0.5
    assert _meta("resnet50").head[0].p == 0.0
    alex = _meta("alexnet", dropout=0.3)  # torchvision's dropouts sit before fc6 and fc7
    assert alex.head[0].p == 0.0
    assert [m.p for m in alex.backbone.classifier if isinstance(m, nn.Dropout)] == [0.3, 0.3]


@pytest.mark.parametrize(("name", "size"), [("mobilenet_v3_small", 224), ("alexnet", 96)])
def test_wrapper_computes_the_library_function(name: str, size: int) -> None:
    # Same seed, same construction order: the wrapper must hold the library's exact network.
    import torchvision.models as tvm

    torch.manual_seed(0)
    ours = create_model(name, num_classes=7).eval()
    torch.manual_seed(0)
    ref = getattr(tvm, name)(weights=None, num_classes=7).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


def test_small_stem_override() -> None:
    native = _meta("resnet18", num_classes=10, input_size=32, small_stem=False)
    assert native.backbone.conv1.kernel_size == (7, 7) and native.variant == ""
    assert native(torch.zeros(2, 3, 32, 32, device="meta")).shape == (2, 10)
    forced = _meta("mobilenet_v2", num_classes=10, input_size=224, small_stem=True)
    assert forced.variant.endswith("(small_stem=True).")
    with pytest.raises(ConfigError, match="75"):
        _meta("inception_v3", num_classes=10, input_size=64, small_stem=False)
    with pytest.raises(ConfigError, match="63"):
        _meta("alexnet", num_classes=10, input_size=32, small_stem=False)
