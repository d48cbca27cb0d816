"""`smallcnn`: the default for Fashion-MNIST-sized images (28x28, 1 channel).

Why this shape: two 3x3 conv blocks per resolution with batch norm (trains fast at a high
learning rate), max-pooling twice (28 -> 14 -> 7), then global average pooling instead of a
large dense layer (fewer parameters, less overfitting). It is sized for ~1,000 training
images/s on 2 CPU cores; see benchmarks/RESULTS.md.
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.base import CnnClassifier
from cnnlab.models.registry import register_model


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def build_small_cnn(
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    dropout: float,
    widths: tuple = (32, 64, 128),
) -> CnnClassifier:
    w1, w2, w3 = widths
    layers = [
        *conv_bn(in_chans, w1),
        *conv_bn(w1, w1),
        nn.MaxPool2d(2),  # 28 -> 14
        *conv_bn(w1, w2),
        *conv_bn(w2, w2),
        nn.MaxPool2d(2),  # 14 -> 7
        *conv_bn(w2, w3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    return CnnClassifier(nn.Sequential(*layers), w3, num_classes, dropout)


@register_model(
    "smallcnn",
    family="smallcnn",
    default_input=28,
    in_chans=1,
    default_dropout=0.1,
    description="cnnlab's default: 5 conv+BN layers, global average pooling (Fashion-MNIST)",
)
def smallcnn(**kw) -> CnnClassifier:
    return build_small_cnn(**kw)
