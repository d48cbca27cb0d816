"""Small CNNs for Fashion-MNIST-sized images (28x28, 1 channel): architectures as data.

`smallcnn`, the default, is built for a compute budget and for a CPU's clock: 91% Fashion-MNIST
test accuracy within 4 TFLOP of training (forward + backward per image x images seen;
benchmarks/RESULTS.md, "Fashion-MNIST on a FLOP budget") in as few seconds as we found. Why
this shape:
- one 3x3 conv at full resolution (1 -> 16 channels: cheap with one input channel), then
  max-pooling before anything wide: a 3x3 conv costs H*W*C_in*C_out*9 MACs, so every layer
  that stays at 28x28 costs 4x its twin at 14x14;
- narrow full 3x3 convs (24 channels at 14 px, 40 at 7 px), not depthwise-separable blocks:
  the separable blocks (`smallcnn_dw`) need 8x fewer FLOPs per layer at the same width, but a
  CPU runs them at about 0.7x the dense convs' GFLOP/s, so at an equal FLOP budget and
  accuracy the dense net trains in about 0.7x the seconds (RESULTS.md: 4 epochs in 115 s
  against 163 s, one after the other in one command on a 2-vCPU AMD EPYC);
- batch norm after every conv (trains fast at a high learning rate) and global average pooling
  instead of a large dense layer (fewer parameters, less overfitting).
It costs 17.4 MFLOP per training image, against 131 for `smallcnn_dense`, cnnlab's first
default (5 full 3x3 conv layers, 32-32-64-64-128), kept for comparison. `smallcnn_dw` (the
default before, 16.9 MFLOP) reaches the same accuracy more slowly; `smallcnn_deep`, its deeper
twin with a third separable block at each resolution (27.5 MFLOP), is the 93% recipe with
`cnnlab evaluate --tta flip` (README, "Benchmarks").

    create_model("smallcnn", num_classes=10)   # 32,522 parameters
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.base import CnnClassifier
from cnnlab.models.registry import register_model

# An int n: 3x3 conv (n channels) + BN + ReLU. "M": 2x2 max-pool. ("dw", n): depthwise-separable
# block, a 3x3 conv per channel + BN + ReLU, then a 1x1 conv to n channels + BN + ReLU.
SMALL_CFGS: dict[str, list] = {
    "smallcnn": [16, "M", 24, 24, "M", 40, 40],
    "smallcnn_dw": [32, "M", ("dw", 64), ("dw", 64), "M", ("dw", 128), ("dw", 128)],
    "smallcnn_deep": [32, "M", ("dw", 64), ("dw", 64), ("dw", 64), "M"]
    + [("dw", 128), ("dw", 128), ("dw", 128)],
    "smallcnn_dense": [32, 32, "M", 64, 64, "M", 128],
}


def conv_bn(c_in: int, c_out: int, kernel: int = 3, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def build_small_cnn(
    cfg: list, *, num_classes: int, in_chans: int, input_size: int, dropout: float
) -> CnnClassifier:
    layers: list[nn.Module] = []
    c = in_chans
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2))  # 28 -> 14 -> 7
        elif isinstance(item, tuple):  # ("dw", n)
            layers += conv_bn(c, c, groups=c) + conv_bn(c, item[1], kernel=1)
            c = item[1]
        else:
            layers += conv_bn(c, item)
            c = item
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (N, C, h, w) -> (N, C)
    return CnnClassifier(nn.Sequential(*layers), c, num_classes, dropout)


def _register(name: str, description: str) -> None:
    def builder(**kw) -> CnnClassifier:
        return build_small_cnn(SMALL_CFGS[name], **kw)

    register_model(
        name, family="smallcnn", default_input=28, in_chans=1, default_dropout=0.1,
        description=description,
    )(builder)  # fmt: skip


_register(
    "smallcnn",
    "cnnlab's default: 5 narrow conv+BN layers (16-24-24-40-40), global average pooling",
)
_register(
    "smallcnn_dw",
    "conv + 4 depthwise-separable blocks, global average pooling: fewer FLOPs, slower on a CPU",
)
_register(
    "smallcnn_deep",
    "smallcnn_dw with a third separable block at 14 and at 7 px: 93% with --tta flip (README)",
)
_register("smallcnn_dense", "cnnlab's first default: 5 conv+BN layers, global average pooling")
