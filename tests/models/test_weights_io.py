"""Safe loading: malicious pickles are refused, broken files are named, partial loads reported."""

from __future__ import annotations

import ast
import json
import os
import random
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.errors import CheckpointError, UnsafeCheckpointError
from cnnlab.models import create_model
from cnnlab.models.base import CnnClassifier
from cnnlab.models.weights_io import (
    load_safetensors_checked,
    load_weights_file,
    read_safetensors_header,
    safe_torch_load,
    save_safetensors,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def make_marker(path: str) -> None:
    """The payload: proof of code execution if it ever runs."""
    Path(path).write_text("pwned")


class _PythonPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (make_marker, (self.marker,))


class _ShellPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tiny(num_classes: int = 3) -> CnnClassifier:
    backbone = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    return CnnClassifier(backbone, 4, num_classes, name="tiny")


@pytest.mark.parametrize("payload", [_PythonPayload, _ShellPayload])
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("force_unsafe_env", [False, True])
def test_malicious_checkpoint_is_refused(tmp_path, monkeypatch, payload, legacy, force_unsafe_env):
    if force_unsafe_env:
        # Flips torch.load's *default* to unsafe; an explicit weights_only=True must still win.
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    obj = {"state_dict": tiny().state_dict(), "extra": payload(marker)}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_torch_load(path)
    global_name = "make_marker" if payload is _PythonPayload else "system"
    assert global_name in str(err.value) and str(path) in str(err.value)
    with pytest.raises(UnsafeCheckpointError):
        load_weights_file(tiny(), path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda good: good[: len(good) // 2], id="truncated"),
        pytest.param(lambda good: good[:100], id="header-only"),
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: random.Random(0).randbytes(2000), id="garbage"),
        pytest.param(lambda good: b"hello, world\n", id="text"),
    ],
)
def test_broken_file_is_a_checkpoint_error(tmp_path, content):
    good = tmp_path / "good.pt"
    torch.save(tiny().state_dict(), good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content(good.read_bytes()))
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as err:
        safe_torch_load(bad)
    assert type(err.value) is CheckpointError  # not reported as an attack


def test_plain_state_dict_loads_with_the_unsafe_env_set(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = tmp_path / "ok.pt"
    state = tiny().state_dict()
    torch.save({"state_dict": state, "epoch": 3, "classes": ["a", "b", "c"]}, path)
    loaded = safe_torch_load(path)
    assert loaded["epoch"] == 3 and torch.equal(
        loaded["state_dict"]["head.1.weight"], state["head.1.weight"]
    )


def test_safetensors_round_trip(tmp_path):
    model, fresh = tiny(), tiny()
    path = tmp_path / "out" / "model.safetensors"
    save_safetensors(model.state_dict(), path, {"architecture": "tiny", "classes": "a,b,c"})
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]  # no temp left
    meta = load_safetensors_checked(fresh, path)
    assert meta == {"architecture": "tiny", "classes": "a,b,c"}
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_safetensors_strict_load_names_the_problem(tmp_path):
    path = tmp_path / "m.safetensors"
    save_safetensors(tiny(3).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"head\.1\.weight has shape \(3, 4\).*\(5, 4\)"):
        load_safetensors_checked(tiny(5), path)
    bigger = nn.Sequential(tiny(3), nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match="missing"):
        load_safetensors_checked(bigger, path)
    with pytest.raises(ValueError, match="str -> str"):
        save_safetensors(tiny().state_dict(), path, {"epoch": 3})


def _raw_safetensors(path: Path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_safetensors_bombs_are_rejected_before_allocation(tmp_path):
    huge_len = tmp_path / "huge_len.safetensors"
    huge_len.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(CheckpointError, match="header length"):
        load_weights_file(tiny(), huge_len)

    many = tmp_path / "many.safetensors"
    entries = {
        f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(30_000)
    }
    _raw_safetensors(many, entries)
    with pytest.raises(CheckpointError, match="30000 tensors"):
        load_weights_file(tiny(), many)

    odd = tmp_path / "odd.safetensors"
    _raw_safetensors(
        odd, {"w": {"dtype": "OBJECT", "shape": [1], "data_offsets": [0, 8]}}, b"x" * 8
    )
    with pytest.raises(CheckpointError, match="dtype/shape"):
        load_weights_file(tiny(), odd)

    # a shape that does not fit its bytes: 10^18 floats claimed in 8 bytes, named as the
    # weights file's fault (model.json, checked against the header, is not to blame)
    shape = tmp_path / "shape.safetensors"
    _raw_safetensors(
        shape, {"head.1.weight": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 8]}},
        b"x" * 8,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match=r"shape.safetensors is not a valid .*in 8 bytes"):
        read_safetensors_header(shape)
    beyond = tmp_path / "beyond.safetensors"
    _raw_safetensors(beyond, {"w": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}}, b"x")
    with pytest.raises(CheckpointError, match="impossible data_offsets"):
        read_safetensors_header(beyond)

    good = tmp_path / "good.safetensors"
    save_safetensors(tiny().state_dict(), good)
    assert read_safetensors_header(good)  # real files pass the span checks
    with pytest.raises(CheckpointError, match="cap"):
        read_safetensors_header(good, max_bytes=100)


@pytest.mark.parametrize("layout", ["raw", "lightning", "ddp", "model_key"])
@pytest.mark.parametrize("suffix", [".pth", ".ckpt", ".safetensors"])
def test_weights_file_partial_load_keeps_a_new_head(tmp_path, layout, suffix):
    trained = tiny(10)
    state = trained.state_dict()
    if layout == "lightning":
        state = {f"model.{k}": v for k, v in state.items()}
    elif layout == "ddp":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_safetensors(state, path)
    else:
        wrap = {"lightning": {"state_dict": state, "epoch": 2}, "model_key": {"model": state}}
        torch.save(wrap.get(layout, state), path)

    model = tiny(3)
    head_before = model.head[1].weight.clone()
    report = load_weights_file(model, path)
    assert [k for k, _, _ in report.shape_mismatch] == ["head.1.weight", "head.1.bias"]
    assert report.missing == [] and report.unexpected == []
    assert len(report.matched) == len(trained.state_dict()) - 2
    assert torch.equal(model.backbone[0].weight, trained.backbone[0].weight)
    assert torch.equal(model.head[1].weight, head_before)
    assert "kept new head for 2" in report.summary()


def test_weights_file_reports_missing_and_unexpected(tmp_path):
    state = tiny(3).state_dict()
    state.pop("backbone.1.running_var")
    state["aux.weight"] = torch.zeros(2)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    report = load_weights_file(tiny(3), path)
    assert report.missing == ["backbone.1.running_var"]
    assert report.unexpected == ["aux.weight"]
    assert "1 missing" in report.summary() and "1 unexpected" in report.summary()


def test_create_model_with_weights_file(tmp_path):
    trained = create_model("smallcnn", num_classes=10)
    path = tmp_path / "trained.safetensors"
    save_safetensors(trained.state_dict(), path)
    model = create_model("smallcnn", num_classes=4, weights_file=path)
    assert model.num_classes == 4
    assert torch.equal(model.backbone[0].weight, trained.backbone[0].weight)


def test_foreign_weights_fail_with_a_hint(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1), "layer4.0.conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="none of the 2 tensors.*ResNet"):
        load_weights_file(tiny(), path)
    other = tmp_path / "other.safetensors"
    save_safetensors({"x.weight": torch.zeros(2)}, other, {"architecture": "vgg16"})
    with pytest.raises(CheckpointError, match="'vgg16': create that model"):
        load_weights_file(tiny(), other)
    with pytest.raises(CheckpointError, match="use .safetensors"):
        load_weights_file(tiny(), tmp_path / "w.onnx")
    with pytest.raises(CheckpointError, match="not found"):
        load_weights_file(tiny(), tmp_path / "absent.pth")


def test_a_different_stem_is_an_error_not_a_silent_partial_load(tmp_path):
    path = tmp_path / "rgb.pt"
    three = CnnClassifier(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), 4, 3)
    one = CnnClassifier(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()), 4, 3)
    torch.save(three.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"backbone\.0\.weight has shape \(4, 3, 3, 3\)"):
        load_weights_file(one, path)


def _dotted(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{_dotted(func.value)}.{func.attr}"
    return ""


def unsafe_loads(source: str) -> list[str]:
    """Calls that could unpickle arbitrary objects: pickle.load(s), torch.load without an
    explicit weights_only=True, any non-save call passed weights_only=False."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        flag = kw.get("weights_only")
        if name.split(".")[-1] in {"load", "loads", "Unpickler"} and "pickle" in name:
            found.append(f"{name} line {node.lineno}")
        elif name == "torch.load" and not (isinstance(flag, ast.Constant) and flag.value is True):
            found.append(f"torch.load without weights_only=True, line {node.lineno}")
        elif (
            isinstance(flag, ast.Constant) and flag.value is False and "save" not in name.lower()
        ):  # Lightning's save_checkpoint(weights_only=False) writes; loaders must not get False
            found.append(f"{name}(weights_only=False) line {node.lineno}")
    return found


def test_the_static_check_catches_unsafe_loads():
    assert unsafe_loads("import pickle\npickle.load(f)")
    assert unsafe_loads("torch.load(p)")
    assert unsafe_loads("torch.load(p, weights_only=False)")
    assert unsafe_loads("Model.load_from_checkpoint(p, weights_only=False)")
    assert not unsafe_loads("torch.load(p, map_location='cpu', weights_only=True)")
    assert not unsafe_loads("trainer.save_checkpoint(p, weights_only=False)")


def test_no_unsafe_loading_anywhere_in_src():
    offenders = {
        str(p.relative_to(SRC)): bad
        for p in SRC.rglob("*.py")
        if (bad := unsafe_loads(p.read_text(encoding="utf-8")))
    }
    assert offenders == {}
    # and nothing spells the unsafe call in a way the AST walk would miss (e.g. via getattr)
    texts = {p: p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}
    assert [p for p, t in texts.items() if "pickle.load" in t or "pickle.Unpickler" in t] == []


def test_truncated_legacy_pickle_is_not_reported_as_an_attack(tmp_path):
    good = tmp_path / "legacy.pt"
    torch.save(tiny().state_dict(), good, _use_new_zipfile_serialization=False)
    bad = tmp_path / "cut.pt"
    data = good.read_bytes()
    for cut in (len(data) // 3, len(data) // 2):
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as err:
            safe_torch_load(bad)
        assert type(err.value) is CheckpointError, err.value
