"""torchvision and timm CNNs cut into cnnlab's shape: `backbone` (image → (N, F)) + `head`.

    from cnnlab.models import create_model
    create_model("resnet50", num_classes=10, input_size=32).variant
    # 'CIFAR-style stem: conv1 3×3 stride 1 and no max-pool instead of 7×7 stride 2 + ...'

Weights are never downloaded here (`weights=None`, timm `pretrained=False`); pretrained loading
lives with the weight specs. The library model's last Linear becomes our head's Linear, with its
library initialisation; a Dropout directly before it (mobilenet_v2/v3, inception_v3) becomes our
head's dropout, so the parameter count and behaviour are the library's and `dropout=` sets it.
torchvision's alexnet has its dropouts before fc6 and fc7 instead: `dropout=` sets those and
its head has none.

Small inputs: the 32x-downsampling stems leave 1×1 or nothing of a 32 px image, so below
SMALL_BELOW = 64 px each family drops its early downsampling (the total stride becomes 8 or 16),
and says so in `model.variant` ('' at the library's configuration):
- resnet*, seresnet50: CIFAR-style stem, conv1 3×3 stride 1, no max-pool (total stride 8).
- senet154 (deep 3-conv stem): first stem conv stride 1, no max-pool (total stride 8).
- mobilenet_v2/_v3_*: stem conv stride 1 (total stride 16; 32 px ends at 2×2).
- alexnet: conv1 3×3 stride 1 padding 1; torchvision's adaptive pool then stretches the small
  final map to 6×6, so the 9,216-wide classifier (and param count) stays.
- inception_v3 (native 299; its stem needs ≥ 75 px): below 75 px Conv2d_1a gets stride 1 and
  the first max-pool goes (64 px ends at 6×6, 32 px at 2×2); below 21 px the second goes too.
Inputs below MIN_INPUT = 16 px raise ConfigError (torchvision's alexnet needs 15 even with the
small stem). The override `small_stem=False` keeps the library's stem at any size it runs on
(alexnet ≥ 63 px, inception_v3 ≥ 75 px), e.g. to load its pretrained weights into a 32 px
model; `small_stem=True` forces the small stem. `in_chans` replaces the first conv (timm does
it itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from cnnlab.arithmetic import conv_output_size, pool_output_size
from cnnlab.errors import ConfigError
from cnnlab.models.base import CnnClassifier
from cnnlab.models.registry import register_model

SMALL_BELOW = 64  # px; below this the classic stems leave < 2×2 maps at the last stage
MIN_INPUT = 16  # px


@dataclass(frozen=True)
class Spec:
    """How to build one library model and fit it to cnnlab's backbone + head."""

    make: Callable[[int, float], nn.Module]  # (num_classes, dropout) -> library model
    head_attr: str  # attribute holding the classifier (a Linear, or a Sequential ending in one)
    stem: Callable[..., str]  # (model, in_chans, small, input_size) -> what changed
    dropout_attr: str = ""  # a separate Dropout attribute applied right before the head
    dropout_inside: bool = False  # `dropout` goes to the library's hidden layers, not the head
    small_below: int = SMALL_BELOW  # inputs below this get the small-input stem by default
    native_min: int = MIN_INPUT  # the smallest input the library's own stem runs on


def _new_conv(
    old: nn.Conv2d,
    *,
    in_chans: int | None = None,
    kernel: int | None = None,
    stride: int | None = None,
    padding: int | None = None,
    init: str = "kaiming",
) -> nn.Conv2d:
    """A copy of `old`'s hyper-parameters with some replaced, freshly initialised."""
    conv = nn.Conv2d(
        old.in_channels if in_chans is None else in_chans,
        old.out_channels,
        old.kernel_size if kernel is None else kernel,
        old.stride if stride is None else stride,
        old.padding if padding is None else padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
    )
    # The libraries' own conv init, so a replaced stem starts like the rest of the network.
    if init == "trunc_normal":  # torchvision Inception3
        nn.init.trunc_normal_(conv.weight, mean=0.0, std=0.1, a=-2, b=2)
    else:  # torchvision resnet/mobilenet, timm resnet
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


# Stem surgeries: (model, in_chans, small, input_size) -> what changed ('' when nothing did).


def _resnet_stem(m: nn.Module, in_chans: int, small: bool, input_size: int) -> str:
    # torchvision ResNet and timm ResNet (seresnet50) share conv1 / maxpool attribute names.
    if small:
        m.conv1 = _new_conv(m.conv1, in_chans=in_chans, kernel=3, stride=1, padding=1)
        m.maxpool = nn.Identity()
        return (
            "CIFAR-style stem: conv1 3×3 stride 1 and no max-pool instead of 7×7 stride 2 + "
            "max-pool, total stride 8 instead of 32"
        )
    if in_chans != m.conv1.in_channels:
        m.conv1 = _new_conv(m.conv1, in_chans=in_chans)
    return ""


def _deep_stem(m: nn.Module, in_chans: int, small: bool, input_size: int) -> str:
    # timm senet154: conv1 is Sequential(conv 3×3 s2, bn, act, conv, bn, act, conv); timm has
    # already built it for in_chans.
    if small:
        m.conv1[0] = _new_conv(m.conv1[0], stride=1)
        m.maxpool = nn.Identity()
        return "first stem conv stride 1 and no max-pool, total stride 8 instead of 32"
    return ""


def _mobilenet_stem(m: nn.Module, in_chans: int, small: bool, input_size: int) -> str:
    stem = m.features[0]  # Conv2dNormActivation(in_chans, 16|32, 3, stride 2)
    if small or in_chans != stem[0].in_channels:
        stem[0] = _new_conv(stem[0], in_chans=in_chans, stride=1 if small else None)
    return "stem conv stride 1 instead of 2, total stride 16 instead of 32" if small else ""


def _alexnet_stem(m: nn.Module, in_chans: int, small: bool, input_size: int) -> str:
    if small:
        m.features[0] = _new_conv(m.features[0], in_chans=in_chans, kernel=3, stride=1, padding=1)
        return (
            "conv1 3×3 stride 1 padding 1 instead of 11×11 stride 4; the adaptive pool "
            "stretches the final map to 6×6 for the 9,216-wide fc6"
        )
    if in_chans != m.features[0].in_channels:
        m.features[0] = _new_conv(m.features[0], in_chans=in_chans)
    return ""


def inception_final_side(n: int, stride1: int = 2, pool1: bool = True, pool2: bool = True) -> int:
    """Side of Inception-v3's last map (Mixed_7c) for an n-px input; 0 when the net fails."""
    try:
        n = conv_output_size(n, 3, 0, stride1)  # Conv2d_1a_3x3
        n = conv_output_size(n, 3)  # Conv2d_2a_3x3; 2b has padding 1
        n = pool_output_size(n, 3, 0, 2) if pool1 else n
        n = conv_output_size(n, 3)  # Conv2d_4a_3x3; 3b is 1×1
        n = pool_output_size(n, 3, 0, 2) if pool2 else n
        n = conv_output_size(n, 3, 0, 2)  # Mixed_6a: 3×3 stride-2 reduction
        return conv_output_size(n, 3, 0, 2)  # Mixed_7a
    except ValueError:
        return 0


# Small stems, tried in order: the first that leaves a map after Mixed_7a wins (≥ 21 px keeps
# the second max-pool, ≥ 13 px needs neither).
INCEPTION_SMALL_STEMS: list[tuple[int, bool, bool, str]] = [
    (1, False, True, "Conv2d_1a stride 1 and no first max-pool"),
    (1, False, False, "Conv2d_1a stride 1 and no stem max-pools (one would leave no map)"),
]


def _inception_stem(m: nn.Module, in_chans: int, small: bool, input_size: int) -> str:
    stride1, pool1, pool2, note = (2, True, True, "")
    if small:
        stride1, pool1, pool2, note = next(
            (s for s in INCEPTION_SMALL_STEMS if inception_final_side(input_size, *s[:3]) >= 1),
            INCEPTION_SMALL_STEMS[-1],
        )
    old = m.Conv2d_1a_3x3.conv
    if stride1 != 2 or in_chans != old.in_channels:
        m.Conv2d_1a_3x3.conv = _new_conv(
            old, in_chans=in_chans, stride=stride1, init="trunc_normal"
        )
    m.maxpool1 = m.maxpool1 if pool1 else nn.Identity()
    m.maxpool2 = m.maxpool2 if pool2 else nn.Identity()
    return note


def _cut_head(model: nn.Module, spec: Spec) -> nn.Linear:
    """Remove the final Linear, and a Dropout right before it (our head has its own)."""
    classifier = getattr(model, spec.head_attr)
    if isinstance(classifier, nn.Linear):
        linear, rest = classifier, nn.Identity()
    else:
        layers = list(classifier)
        linear = layers.pop()
        if layers and isinstance(layers[-1], nn.Dropout):
            layers.pop()
        rest = nn.Sequential(*layers) if layers else nn.Identity()
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"expected a Linear at the end of {spec.head_attr}, got {linear}")
    setattr(model, spec.head_attr, rest)
    if spec.dropout_attr:
        setattr(model, spec.dropout_attr, nn.Identity())
    return linear


def build_library_model(
    spec: Spec,
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    dropout: float,
    name: str = "",
    small_stem: bool | None = None,
    **overrides: Any,
) -> CnnClassifier:
    """Library model -> CnnClassifier; `small_stem` None chooses from `input_size`.

    `small_stem=False` keeps the library's stem at any size it can run (e.g. to load its
    pretrained weights into a 32 px model), `True` forces the small-input stem.
    """
    if overrides:
        raise ConfigError(
            f"unknown option(s) for {name}: {', '.join(sorted(overrides))}; accepted: small_stem"
        )
    if input_size < MIN_INPUT:
        raise ConfigError(f"{name} needs input_size >= {MIN_INPUT} px, got {input_size}")
    small = input_size < spec.small_below if small_stem is None else small_stem
    if not small and input_size < spec.native_min:
        raise ConfigError(
            f"{name} with its library stem needs input_size >= {spec.native_min} px, got "
            f"{input_size}; drop small_stem=False to get the small-input variant"
        )
    model = spec.make(num_classes, dropout)
    note = spec.stem(model, in_chans, small, input_size)
    why = f"input < {spec.small_below} px" if small_stem is None else "small_stem=True"
    linear = _cut_head(model, spec)
    head_dropout = 0.0 if spec.dropout_inside else dropout
    variant = f"{note} ({why})." if note else ""
    clf = CnnClassifier(model, linear.in_features, num_classes, head_dropout, variant=variant)
    clf.head[-1] = linear  # keep the library's initialisation of the last layer
    return clf


def _tv(fn: str, *, pass_dropout: bool = False, **kw: Any) -> Callable[[int, float], nn.Module]:
    def make(num_classes: int, dropout: float) -> nn.Module:
        import torchvision.models as tvm  # heavy import, only when a model is built

        extra = {"dropout": dropout} if pass_dropout else {}
        return getattr(tvm, fn)(weights=None, num_classes=num_classes, **extra, **kw)

    return make


def _timm(name: str, in_chans: int) -> Callable[[int, float], nn.Module]:
    def make(num_classes: int, dropout: float) -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)

    return make


def _register(name: str, spec_for: Callable[[int], Spec], **info: Any) -> None:
    # spec_for(in_chans): timm builds the first conv for in_chans itself, torchvision does not.
    def builder(*, in_chans: int, **kw: Any) -> CnnClassifier:
        return build_library_model(spec_for(in_chans), in_chans=in_chans, name=name, **kw)

    register_model(name, **info)(builder)


RESNET_PAPER = (
    "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016 "
    "(arXiv:1512.03385)"
)
SENET_PAPER = "Hu, Shen, Sun. Squeeze-and-Excitation Networks. CVPR 2018 (arXiv:1709.01507)"

_register(
    "alexnet",
    lambda c: Spec(
        _tv("alexnet", pass_dropout=True),
        "classifier",
        _alexnet_stem,
        dropout_inside=True,
        native_min=63,  # 11×11/4 conv and three 3/2 max-pools: 63 px ends at 1×1
    ),
    family="alexnet",
    default_input=224,
    paper="Krizhevsky. One weird trick for parallelizing convolutional neural networks. "
    "arXiv:1404.5997, 2014",
    description="torchvision's AlexNet (64-192-384-256-256 convs, no LRN, adaptive 6×6 pool); "
    "dropout= sets the dropouts before fc6 and fc7",
    default_dropout=0.5,
    published_params=61.1,
)
for _depth, _params in [(18, 11.7), (34, 21.8), (50, 25.6), (101, 44.5), (152, 60.2)]:
    _block = "basic" if _depth < 50 else "bottleneck"
    _register(
        f"resnet{_depth}",
        lambda c, d=_depth: Spec(_tv(f"resnet{d}"), "fc", _resnet_stem),
        family="resnet",
        default_input=224,
        paper=RESNET_PAPER,
        description=f"torchvision ResNet-{_depth} ({_block} blocks"
        + (", stride in the 3×3 conv: v1.5)" if _depth >= 50 else ")"),
        published_params=_params,
    )
_register(
    "inception_v3",
    lambda c: Spec(
        _tv("inception_v3", aux_logits=False, init_weights=True),
        "fc",
        _inception_stem,
        dropout_attr="dropout",
        small_below=75,
        native_min=75,  # inception_final_side(75) == 1
    ),
    family="inception",
    default_input=299,
    paper="Szegedy, Vanhoucke, Ioffe, Shlens, Wojna. Rethinking the Inception Architecture for "
    "Computer Vision. CVPR 2016 (arXiv:1512.00567)",
    description="torchvision Inception-v3 without the auxiliary classifier "
    "(23.8M params; 27.2M with it)",
    default_dropout=0.5,
    published_params=23.8,
)
_register(
    "mobilenet_v2",
    lambda c: Spec(_tv("mobilenet_v2"), "classifier", _mobilenet_stem),
    family="mobilenet",
    default_input=224,
    paper="Sandler, Howard, Zhu, Zhmoginov, Chen. MobileNetV2: Inverted Residuals and Linear "
    "Bottlenecks. CVPR 2018 (arXiv:1801.04381)",
    description="torchvision MobileNetV2 (width 1.0): inverted residuals, depthwise 3×3 convs",
    default_dropout=0.2,
    published_params=3.5,
)
MOBILENET_V3_PAPER = "Howard et al. Searching for MobileNetV3. ICCV 2019 (arXiv:1905.02244)"
for _size, _params in [("small", 2.5), ("large", 5.5)]:
    _register(
        f"mobilenet_v3_{_size}",
        lambda c, s=_size: Spec(_tv(f"mobilenet_v3_{s}"), "classifier", _mobilenet_stem),
        family="mobilenet",
        default_input=224,
        paper=MOBILENET_V3_PAPER,
        description=f"torchvision MobileNetV3-{_size.capitalize()}: depthwise convs, SE, "
        "hard-swish",
        default_dropout=0.2,
        published_params=_params,
    )
_register(
    "seresnet50",
    lambda c: Spec(_timm("seresnet50", c), "fc", _resnet_stem),
    family="senet",
    default_input=224,
    paper=SENET_PAPER,
    description="timm SE-ResNet-50: ResNet-50 with squeeze-and-excitation in every block",
    published_params=28.1,
)
_register(
    "senet154",
    lambda c: Spec(_timm("senet154", c), "fc", _deep_stem),
    family="senet",
    default_input=224,
    paper=SENET_PAPER,
    description="timm SENet-154: SE-ResNeXt-152 64×4d with a deep 3-conv stem (ILSVRC 2017 winner)",
    published_params=115.1,
)
