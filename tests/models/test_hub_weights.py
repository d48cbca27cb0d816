"""Hub weights without a network: metadata, hash-named files in a temporary TORCH_HOME, errors."""

from __future__ import annotations

import hashlib
import os
import urllib.error
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab.models.hub_weights as hub
from cnnlab.errors import CheckpointError
from cnnlab.models.base import CnnClassifier
from cnnlab.models.hub_weights import HUB_WEIGHTS, HubFile, hub_weights_spec
from cnnlab.models.spec import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec
from cnnlab.models.weights_io import save_safetensors

REQUIRED = [
    "vgg16", "vgg16_bn", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "alexnet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "inception_v3",
]  # fmt: skip


def _offline(url: str, dst: Path, hash_prefix: str) -> None:
    raise urllib.error.URLError("no network in tests")


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME and a downloader that fails as if offline: tests never download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hub, "_download", _offline)
    monkeypatch.setattr(hub, "_hf_cached_file", lambda repo_id: None)
    return tmp_path / "torch" / "hub" / "checkpoints"


class _TorchvisionLike(nn.Module):
    """Names as torchvision writes them (conv1, bn1, fc); ours are backbone.N / head.1."""

    def __init__(self, width: int = 4, aux: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3)
        self.bn1 = nn.BatchNorm2d(width)
        if aux:
            self.AuxLogits = nn.Linear(width, 7)
        self.fc = nn.Linear(width, 5)


class _Shell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _ours(width: int = 4) -> CnnClassifier:
    backbone = nn.Sequential(
        nn.Conv2d(3, width, 3),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return CnnClassifier(backbone, width, 5, name="tiny")


def _publish(folder: Path, state: dict, stem: str = "tiny") -> HubFile:
    """Save like torch.hub publishers do: the file's sha256 prefix in its name."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    prefix = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    final = folder / f"{stem}-{prefix}.pth"
    tmp.rename(final)
    return HubFile("tiny", f"https://example.invalid/models/{final.name}")


def _spec(f: HubFile):
    pre = PreprocessSpec((3, 8, 8), IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875)
    return hub_weights_spec(f, pre, source="test", license="test", top1=None, categories=())


@pytest.mark.parametrize("name", REQUIRED)
def test_torchvision_metadata(name):
    spec = HUB_WEIGHTS[name]
    side = 299 if name == "inception_v3" else 224
    assert spec.preprocess.input_size == (3, side, side)
    assert spec.preprocess.interpolation == "bilinear"
    assert spec.preprocess.crop_pct == pytest.approx(side / (342 if side == 299 else 256))
    assert len(spec.categories) == 1000 and spec.num_classes == 1000
    assert 50 < spec.top1 < 80
    assert spec.sha256 in spec.source and len(spec.sha256) == 8
    assert not spec.available()  # the TORCH_HOME is empty


def test_known_values():
    r18 = HUB_WEIGHTS["resnet18"]
    assert r18.sha256 == "f37072fd" and "resnet18-f37072fd.pth" in r18.source
    assert r18.top1 == pytest.approx(69.758)
    assert r18.preprocess.mean == IMAGENET_MEAN
    assert r18.categories[281] == "tabby"
    # transform_input's re-normalisation, applied by the spec instead of inside the model
    assert HUB_WEIGHTS["inception_v3"].preprocess.mean == (0.5, 0.5, 0.5)
    for name in ("seresnet50", "senet154"):
        spec = HUB_WEIGHTS[name]
        assert spec.preprocess.input_size == (3, 224, 224)
        assert spec.preprocess.interpolation == "bicubic"
        assert len(spec.sha256) == 8 and len(spec.categories) == 1000


def test_offline_error_names_file_folder_and_url(torch_home):
    with pytest.raises(CheckpointError) as err:
        HUB_WEIGHTS["vgg16"].load(_ours())
    assert str(err.value) == (
        f"pretrained weights for vgg16 not found: put vgg16-397923af.pth in {torch_home} "
        f"(download: https://download.pytorch.org/models/vgg16-397923af.pth) or run online once"
    )


def test_cached_file_loads_by_order_onto_our_layout(torch_home):
    source = _TorchvisionLike()
    f = _publish(torch_home, source.state_dict())
    spec = _spec(f)
    assert spec.available()
    model = _ours()
    spec.load(model)
    assert torch.equal(model.backbone[0].weight, source.conv1.weight)
    assert torch.equal(model.backbone[1].running_var, source.bn1.running_var)
    assert torch.equal(model.head[1].weight, source.fc.weight)


def test_download_when_online(torch_home, monkeypatch, tmp_path):
    source = _TorchvisionLike()
    f = _publish(tmp_path / "server", source.state_dict())
    served = tmp_path / "server" / f.filename
    calls = []

    def fake_download(url: str, dst: Path, hash_prefix: str) -> None:
        calls.append((url, dst, hash_prefix))
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(served.read_bytes())

    monkeypatch.setattr(hub, "_download", fake_download)
    model = _ours()
    _spec(f).load(model)
    assert calls == [(f.url, torch_home / f.filename, f.hash_prefix)]
    assert torch.equal(model.head[1].bias, source.fc.bias)
    assert (torch_home / f.filename).is_file()


def test_file_not_matching_its_name_is_never_unpickled(torch_home, tmp_path):
    marker = tmp_path / "MARKER"
    f = HUB_WEIGHTS["resnet18"]
    torch_home.mkdir(parents=True)
    # Not the published file (and a malicious one): refused on the hash, before torch.load.
    torch.save({"x": _Shell(f"touch {marker}")}, torch_home / "resnet18-f37072fd.pth")
    assert f.available()
    with pytest.raises(CheckpointError, match="promises f37072fd"):
        f.load(_ours())
    assert not marker.exists()


def test_architecture_mismatch_names_the_first_pair(torch_home):
    f = _publish(torch_home, _TorchvisionLike(width=6).state_dict())
    with pytest.raises(CheckpointError, match=r"#0 conv1\.weight \(6, 3, 3, 3\) would go to "):
        _spec(f).load(_ours(width=4))


def test_optional_aux_head_and_missing_bn_counters(torch_home):
    source = _TorchvisionLike(aux=True)
    state = OrderedDict((k, v) for k, v in source.state_dict().items() if "num_batches" not in k)
    f = HubFile("tiny", _publish(torch_home, state).url, optional_prefixes=("AuxLogits.",))
    model = _ours()
    _spec(f).load(model)
    assert torch.equal(model.head[1].weight, source.fc.weight)
    # without the optional prefix the extra tensors make it another architecture
    with pytest.raises(CheckpointError, match="not the same architecture"):
        _spec(HubFile("tiny", f.url)).load(_ours())


def test_real_torchvision_layout_maps_onto_a_wrapped_resnet18():
    from torchvision.models import resnet18

    reference = resnet18()
    body = resnet18()
    body.fc = nn.Identity()
    ours = CnnClassifier(body, 512, 1000)
    mapped = hub._map(reference.state_dict(), ours.state_dict(), "resnet18.pth", "resnet18")
    ours.load_state_dict(mapped, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), reference.eval()(x), atol=1e-5)


def test_transform_input_is_switched_off_on_load(torch_home):
    f = _publish(torch_home, _TorchvisionLike().state_dict())
    model = _ours()
    model.backbone.transform_input = True
    _spec(f).load(model)
    assert model.backbone.transform_input is False


def test_hugging_face_cache_is_used_and_verified(torch_home, tmp_path, monkeypatch):
    import timm

    reference = timm.create_model("test_efficientnet")
    body = timm.create_model("test_efficientnet", num_classes=0)
    ours = CnnClassifier(body, body.num_features, reference.num_classes)
    blobs = tmp_path / "hf" / "blobs"
    staged = tmp_path / "staged.safetensors"
    save_safetensors(reference.state_dict(), staged)  # stored sorted: order must be restored
    blob = blobs / hashlib.sha256(staged.read_bytes()).hexdigest()
    blobs.mkdir(parents=True)
    staged.rename(blob)
    link = tmp_path / "hf" / "snapshots" / "model.safetensors"
    link.parent.mkdir(parents=True)
    os.symlink(blob, link)
    monkeypatch.setattr(hub, "_hf_cached_file", lambda repo_id: link)
    f = HubFile("tiny", "https://example.invalid/x-0123abcd.pth", "timm/x", "test_efficientnet")
    spec = _spec(f)
    assert spec.available()
    spec.load(ours)
    assert torch.equal(ours.head[1].weight, reference.classifier.weight)
    assert torch.equal(ours.backbone.conv_stem.weight, reference.conv_stem.weight)

    blob.write_bytes(blob.read_bytes()[:-4] + b"\0\0\0\0")  # corrupt the cached content
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        spec.load(ours)
