"""AlexNet and VGG as their papers define them: architectures as data plus one builder each.

    from cnnlab.models import create_model
    create_model("alexnet_paper", num_classes=1000, input_size=227)  # 62,378,344 params
    create_model("vgg16", num_classes=10, input_size=32).variant
    # 'fc6 takes 512·1·1 = 512 inputs instead of 25,088 (the map is 1×1 at 32 px)'

Both end in the same fully connected stack fc6-fc7-fc8 (4096-4096-C, ReLU, dropout 0.5 on the
outputs of fc6 and fc7). fc6/fc7 belong to the backbone, fc8 is the CnnClassifier head, so the
parameters of backbone + head are the paper totals. `dropout` sets both dropout layers;
`fc_width=` (an override) sets the width of fc6/fc7.

Small inputs (the classic stems shrink a 32 px map to nothing). The builder follows the real map
size through the layers and changes only what has to change, saying so in `model.variant`
(an empty string means "exactly the paper's network"):
- AlexNet, input < 64 px: conv1 becomes 3×3 stride 1 padding 1 (instead of 11×11 stride 4).
- A max-pool whose input map is smaller than its window (AlexNet 3×3) or would go below 1×1 (VGG
  2×2 stride 2) is dropped.
- fc6 is sized from the real final map: a map smaller than the paper's (6×6 AlexNet, 7×7 VGG)
  is flattened as it is (fc6 takes 256·n·n or 512·n·n inputs); a larger one goes through an
  adaptive average pool down to the paper's size, as torchvision does, so fc6 keeps its width.
Note that the paper's 6×6 AlexNet map needs a 227 px input; at 224 px it is 5×5.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from cnnlab.arithmetic import conv_output_size, pool_output_size
from cnnlab.errors import ConfigError
from cnnlab.models.base import CnnClassifier
from cnnlab.models.registry import register_model

# (name, out_channels, kernel, stride, padding) for convs; "lrn" and "pool" in between.
# Krizhevsky et al. 2012, Figure 2 drawn as one tower (the two GPU halves merged: 96, 256, ...).
ALEXNET: list[tuple | str] = [
    ("conv1", 96, 11, 4, 0), "lrn", "pool",
    ("conv2", 256, 5, 1, 2), "lrn", "pool",
    ("conv3", 384, 3, 1, 1),
    ("conv4", 384, 3, 1, 1),
    ("conv5", 256, 3, 1, 1), "pool",
]  # fmt: skip
ALEXNET_SMALL_CONV1 = ("conv1", 96, 3, 1, 1)
ALEXNET_SMALL_BELOW = 64  # px; an 11×11 stride-4 conv1 leaves < 14×14 below this
ALEXNET_POOL = (3, 2)  # overlapping pooling, window 3 stride 2 (paper §3.4)
ALEXNET_MAP = 6  # final map side at 227 px: fc6 takes 256·6·6 = 9,216 inputs

# Simonyan & Zisserman 2015, Table 1: ints are 3×3 conv widths (stride 1, padding 1), "M" is a
# 2×2 stride-2 max-pool. Same table as torchvision's and timm's vgg.py.
VGG_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}  # fmt: skip
VGG_MAP = 7  # final map side at 224 px: fc6 takes 512·7·7 = 25,088 inputs

FC_WIDTH = 4096  # fc6/fc7 width in both papers

ALEXNET_PAPER = (
    "Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep Convolutional Neural "
    "Networks. NeurIPS 2012"
)
VGG_PAPER = (
    "Simonyan, Zisserman. Very Deep Convolutional Networks for Large-Scale Image Recognition. "
    "ICLR 2015 (arXiv:1409.1556)"
)
BN_PAPER = "; batch norm: Ioffe, Szegedy. Batch Normalization. ICML 2015"


def _take_overrides(name: str, overrides: dict[str, Any], allowed: dict[str, Any]) -> dict:
    unknown_keys = sorted(set(overrides) - set(allowed))
    if unknown_keys:
        accepted = ", ".join(allowed) or "none"
        raise ConfigError(
            f"unknown option(s) for {name}: {', '.join(unknown_keys)}; accepted: {accepted}"
        )
    return {**allowed, **overrides}


def _check_input(name: str, input_size: int) -> None:
    if input_size < 1:
        raise ConfigError(
            f"input_size for {name} must be a positive number of pixels, got {input_size}"
        )


def _fc_stack(c: int, side: int, paper_side: int, width: int, dropout: float) -> tuple[list, str]:
    """Layers from the final conv map (c, side, side) to the fc7 output, and a variant note."""
    note = ""
    pool: nn.Module = nn.Identity()
    if side > paper_side:
        # Averaging a larger map down keeps fc6 at the paper's width (torchvision's choice).
        pool = nn.AdaptiveAvgPool2d(paper_side)
        note = (
            f"adaptive average pool {side}×{side} → {paper_side}×{paper_side} before fc6 "
            f"(the paper's map is {paper_side}×{paper_side})"
        )
        side = paper_side
    elif side < paper_side:
        note = (
            f"fc6 takes {c}·{side}·{side} = {c * side * side:,} inputs instead of "
            f"{c * paper_side * paper_side:,} (the final map is {side}×{side}, "
            f"the paper's {paper_side}×{paper_side})"
        )
    layers = [
        ("pool", pool),
        ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(c * side * side, width)),
        ("relu6", nn.ReLU(inplace=True)),
        ("drop6", nn.Dropout(dropout)),
        ("fc7", nn.Linear(width, width)),
        ("relu7", nn.ReLU(inplace=True)),
        # drop7 is the head's dropout: CnnClassifier.head = Dropout + fc8.
    ]
    return layers, note


def _variant(notes: list[str]) -> str:
    """'' at the paper's configuration, else one sentence joining the notes."""
    text = "; ".join(n for n in notes if n)
    return text + "." if text else ""


def build_alexnet(
    *, num_classes: int, in_chans: int, input_size: int, dropout: float, **overrides: Any
) -> CnnClassifier:
    """One-tower AlexNet: conv → ReLU [→ LRN → overlapping max-pool], then fc6-fc7-fc8."""
    _check_input("alexnet_paper", input_size)
    opts = _take_overrides("alexnet_paper", overrides, {"fc_width": FC_WIDTH})
    notes: list[str] = []
    cfg = list(ALEXNET)
    if input_size < ALEXNET_SMALL_BELOW:
        cfg[0] = ALEXNET_SMALL_CONV1
        notes.append(
            f"conv1 3×3 stride 1 padding 1 instead of 11×11 stride 4 "
            f"(input < {ALEXNET_SMALL_BELOW} px)"
        )
    layers: list[tuple[str, nn.Module]] = []
    c, side, k = in_chans, input_size, 0
    for item in cfg:
        if item == "lrn":
            # The paper's k=2, n=5, alpha=1e-4, beta=0.75; PyTorch divides alpha by n, the paper
            # does not, hence alpha = 5·1e-4.
            layers.append((f"lrn{k}", nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)))
        elif item == "pool":
            f, s = ALEXNET_POOL
            if side < f:
                notes.append(
                    f"max-pool after conv{k} dropped "
                    f"(the {side}×{side} map is smaller than its 3×3 window)"
                )
                continue
            layers.append((f"pool{k}", nn.MaxPool2d(f, s)))
            side = pool_output_size(side, f, 0, s)
        else:
            name, c_out, f, s, p = item
            k += 1
            layers += [(name, nn.Conv2d(c, c_out, f, s, p)), (f"relu{k}", nn.ReLU(inplace=True))]
            c, side = c_out, conv_output_size(side, f, p, s)
    fc, note = _fc_stack(c, side, ALEXNET_MAP, opts["fc_width"], dropout)
    backbone = nn.Sequential(OrderedDict([("features", nn.Sequential(OrderedDict(layers))), *fc]))
    return CnnClassifier(
        backbone, opts["fc_width"], num_classes, dropout, variant=_variant([*notes, note])
    )


def build_vgg(
    cfg: list[int | str],
    batch_norm: bool,
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    dropout: float,
    name: str = "vgg",
    **overrides: Any,
) -> CnnClassifier:
    """VGG from its column of Table 1: 3×3 convs (+BN) + ReLU, 2×2 max-pools, fc6-fc7-fc8."""
    _check_input(name, input_size)
    opts = _take_overrides(name, overrides, {"fc_width": FC_WIDTH})
    layers: list[nn.Module] = []
    c, side, dropped = in_chans, input_size, 0
    for v in cfg:
        if v == "M":
            if side < 2:  # a 2×2 stride-2 pool of a 1×1 map would give 0×0
                dropped += 1
                continue
            layers.append(nn.MaxPool2d(2, 2))
            side = pool_output_size(side, 2, 0, 2)
        else:
            # The conv keeps its bias under BN, as torchvision's vgg*_bn: same tensors, same order.
            layers.append(nn.Conv2d(c, v, 3, padding=1))
            layers += [nn.BatchNorm2d(v)] if batch_norm else []
            layers.append(nn.ReLU(inplace=True))
            c = v
    which = "5th max-pool" if dropped == 1 else f"last {dropped} of 5 max-pools"
    notes = [f"the {which} dropped (the map is already 1×1)" if dropped else ""]
    fc, note = _fc_stack(c, side, VGG_MAP, opts["fc_width"], dropout)
    backbone = nn.Sequential(OrderedDict([("features", nn.Sequential(*layers)), *fc]))
    model = CnnClassifier(
        backbone, opts["fc_width"], num_classes, dropout, variant=_variant([*notes, note])
    )
    _vgg_default_init(model)
    return model


def _vgg_default_init(model: nn.Module) -> None:
    # torchvision's VGG initialisation: with it the deep configs train from scratch without the
    # paper's "train A first, copy its layers into the deeper nets" procedure.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# AlexNet §5: "We initialized the weights in each layer from a zero-mean Gaussian distribution with
# standard deviation 0.01. We initialized the neuron biases in the second, fourth, and fifth
# convolutional layers, as well as in the fully-connected hidden layers, with the constant 1. [...]
# We initialized the neuron biases in the remaining layers with the constant 0."
ALEXNET_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")


def alexnet_paper_init(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            # Bias 1 gives the ReLUs positive inputs early on, which the paper says speeds learning.
            nn.init.constant_(m.bias, 1.0 if name.split(".")[-1] in ALEXNET_BIAS_ONE else 0.0)


def vgg_paper_init(model: nn.Module) -> None:
    # VGG §3.1: weights from N(0, 10^-2), biases zero (BN layers keep gamma 1, beta 0).
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


@register_model(
    "alexnet_paper",
    family="alexnet",
    default_input=227,
    paper=ALEXNET_PAPER,
    description="AlexNet as in the paper, one tower: 96-256-384-384-256 convs, LRN, "
    "overlapping pooling, 4096-4096 FC (62.4M params at 227 px)",
    default_dropout=0.5,
    published_params=62.4,  # at its native 227 px; 50.8M at 224 px (5×5 final map)
    paper_init=alexnet_paper_init,
)
def alexnet_paper(**kw: Any) -> CnnClassifier:
    return build_alexnet(**kw)


def _register_vgg(depth: int, batch_norm: bool, params_m: float) -> None:
    name = f"vgg{depth}" + ("_bn" if batch_norm else "")
    letter = {11: "A", 13: "B", 16: "D", 19: "E"}[depth]
    bn = " with batch norm after every conv" if batch_norm else ""

    def builder(**kw: Any) -> CnnClassifier:
        return build_vgg(VGG_CFGS[f"vgg{depth}"], batch_norm, name=name, **kw)

    register_model(
        name,
        family="vgg",
        default_input=224,
        paper=VGG_PAPER + (BN_PAPER if batch_norm else ""),
        description=f"VGG-{depth} (configuration {letter}): {depth - 3} 3×3 convs{bn}, "
        f"5 max-pools, 4096-4096 FC",
        default_dropout=0.5,
        published_params=params_m,
        paper_init=vgg_paper_init,
        # oneDNN's weight gradient of a 3x3 conv over large, few-channel maps is 4x slower
        # on NHWC than on its blocked layout (AVX2): a VGG16 step at 224 px 1.34x, at 64 px
        # 1.04x faster in NCHW (RESULTS.md); the residual and depthwise families are not
        cpu_channels_last=False,
    )(builder)


# Eight three-line variants of one builder; params (M) at 224 px / 1000 classes.
for _depth, _bn, _params in [
    (11, False, 132.9), (13, False, 133.0), (16, False, 138.4), (19, False, 143.7),
    (11, True, 132.9), (13, True, 133.1), (16, True, 138.4), (19, True, 143.7),
]:  # fmt: skip
    _register_vgg(_depth, _bn, _params)
