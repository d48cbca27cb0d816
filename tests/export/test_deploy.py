"""cnnlab.deploy: cnnlab's evaluation preprocessing without torch, bit for bit, and an exported
model run with only onnxruntime + NumPy + Pillow (torch blocked in a subprocess)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

import cnnlab
from cnnlab import deploy
from cnnlab.data import imaging
from cnnlab.data.transforms import ToFloatNormalize, load_for_predict, resize_size
from cnnlab.errors import RunError
from cnnlab.export import export_model, load_exported
from cnnlab.export.onnx import to_onnx
from cnnlab.models import create_model
from cnnlab.models.spec import PreprocessSpec
from tests.export.exportruns import photo

MEAN3, STD3 = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def meta_for(spec: PreprocessSpec, classes: tuple[str, ...] = ("a", "b")) -> deploy.DeployMetadata:
    return deploy.DeployMetadata(
        classes=classes, size=spec.input_size[1:], resize=resize_size(spec), mean=spec.mean,
        std=spec.std, interpolation=spec.interpolation, crop_pct=spec.crop_pct,
        channels="L" if spec.input_size[0] == 1 else "RGB",
    )  # fmt: skip


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    """Real files in the formats and modes users have: camera-sized JPEG (decoded in draft
    mode), PNGs with alpha, grayscale, palette and 16-bit, an EXIF-rotated JPEG, and images
    smaller than the model input (upscaled)."""
    root = tmp_path_factory.mktemp("images")
    files = []
    for k, (name, (h, w), mode) in enumerate(
        [
            ("camera.jpg", (480, 640), "RGB"),
            ("portrait.jpg", (517, 301), "RGB"),
            ("gray.jpg", (120, 90), "L"),
            ("alpha.png", (75, 110), "RGBA"),
            ("palette.png", (64, 64), "P"),
            ("small.png", (30, 41), "RGB"),
        ]
    ):
        path = root / name
        photo(h, w, seed=k, mode=mode).save(path)
        files.append(path)
    deep = (np.arange(60 * 80, dtype=np.uint16).reshape(60, 80) * 13) % 65535
    Image.fromarray(deep.astype(np.uint16)).save(root / "depth16.png")  # mode I;16
    files.append(root / "depth16.png")
    rotated = photo(50, 90, seed=9)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise on display
    rotated.save(root / "rotated.jpg", exif=exif)
    files.append(root / "rotated.jpg")
    return files


@pytest.mark.parametrize(
    "interpolation,chans,size,crop_pct",
    [
        (i, c, s, p)
        for (i, c), (s, p) in itertools.product(
            itertools.product(["bilinear", "bicubic", "nearest", "lanczos"], [1, 3]),
            [(28, 1.0), (64, 0.875), (224, 0.875), (48, 1.15)],  # 1.15: the crop pads
        )
    ],
)
def test_preprocess_equals_cnnlabs_eval_tensor_bit_for_bit(
    image_files, interpolation, chans, size, crop_pct
) -> None:
    mean, std = (MEAN3[:chans], STD3[:chans]) if chans == 3 else ((0.286,), (0.353,))
    spec = PreprocessSpec((chans, size, size), mean, std, interpolation, crop_pct)
    for path in image_files:
        expected = load_for_predict(path, spec)[0].numpy()
        got = deploy.preprocess_image(path, meta_for(spec))
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got, expected), path.name


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_resize_equals_torchvision_on_random_arrays(interpolation) -> None:
    rng = np.random.default_rng(0)
    for trial in range(25):
        h, w = (int(v) for v in rng.integers(9, 400, 2))
        a = rng.integers(0, 256, (h, w, 1 + 2 * (trial % 2)), dtype=np.uint8)
        short = int(rng.integers(8, 300))  # down- and upscaling
        expected = imaging.resize_short(a, short, interpolation)  # torchvision's kernel
        assert np.array_equal(deploy.resize_short(a, short, interpolation), expected)


def test_aa_weights_are_normalised_fixed_point() -> None:
    index, fixed, bits = deploy.aa_weights(517, 73, "bicubic")
    assert index.shape == fixed.shape and index.shape[0] == 73
    assert index.min() >= 0 and index.max() < 517
    # Each row sums to 1.0 in fixed point, up to the rounding of each tap.
    assert np.abs(fixed.sum(axis=1) - (1 << bits)).max() <= index.shape[1]
    assert np.abs(fixed).max() < (1 << 15)  # torch's int16 weights


def test_center_crop_matches_torchvision_including_padding() -> None:
    rng = np.random.default_rng(1)
    for h, w, ch, cw in [(10, 13, 6, 6), (9, 9, 4, 7), (5, 8, 9, 6), (4, 4, 7, 9), (7, 6, 7, 6)]:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = F.center_crop(torch.from_numpy(a).permute(2, 0, 1), [ch, cw])
        assert np.array_equal(deploy.center_crop(a, (ch, cw)), expected.permute(1, 2, 0).numpy())


def test_normalize_equals_to_float_normalize() -> None:
    a = np.random.default_rng(2).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    spec = PreprocessSpec((3, 7, 5), MEAN3, STD3)
    expected = ToFloatNormalize(spec)(torch.from_numpy(a).permute(2, 0, 1)).numpy()
    assert np.array_equal(deploy.normalize(a, MEAN3, STD3), expected)


def test_metadata_round_trip_and_errors() -> None:
    spec = PreprocessSpec((3, 64, 48), MEAN3, STD3, "bicubic", 0.9)
    meta = meta_for(spec, ("ant", "bee, with a comma", "ünïcode"))
    props = meta.to_props()
    assert all(isinstance(v, str) for v in props.values())
    assert deploy.DeployMetadata.from_props(props, "m.onnx") == meta
    del props["classes"]
    with pytest.raises(
        RunError, match=r"m.onnx carries no cnnlab .*missing classes.*cnnlab export"
    ):
        deploy.DeployMetadata.from_props(props, "m.onnx")
    with pytest.raises(RunError, match="uses cnnlab export format 99"):
        deploy.DeployMetadata.from_props({**meta.to_props(), "cnnlab": "99"}, "m.onnx")


def test_top_predictions_orders_by_probability() -> None:
    logits = np.array([[0.0, 2.0, 1.0], [5.0, 5.0, -1.0]], np.float32)
    preds = deploy.top_predictions(["x", "y"], logits, ["a", "b", "c"], topk=2)
    e = np.exp([0.0, 2.0, 1.0])
    assert preds[0].pred == "b" and preds[0].prob == pytest.approx(e[1] / e.sum())
    assert [c for c, _ in preds[0].top] == ["b", "c"]
    assert [c for c, _ in preds[1].top] == ["a", "b"]  # a tie keeps class order


# ---------------------------------------------------------------------------------------------
# the runtime, with torch blocked


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory) -> Path:
    """A run folder (model.safetensors + model.json) and its model.onnx, for smallcnn RGB."""
    run_dir = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=3, in_chans=3, input_size=32).eval()
    spec = PreprocessSpec((3, 32, 32), MEAN3, STD3, "bicubic", 0.875)
    model.preprocess = spec
    build = {"name": "smallcnn", "num_classes": 3, "in_chans": 3, "input_size": 32, "dropout": 0.0}
    export_model(model, run_dir, classes=["ant", "bee", "wasp"], preprocess=spec, build=build)
    (run_dir / "run.json").write_text('{"status": "finished"}')
    meta = meta_for(spec, ("ant", "bee", "wasp"))
    to_onnx(model, torch.zeros(2, 3, 32, 32), run_dir / "model.onnx", metadata=meta.to_props())
    return run_dir


BLOCKED = """
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm", "lightning"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, NoTorch())
from cnnlab.deploy import OnnxClassifier
from cnnlab.evaluation.predict import predict_images

model = OnnxClassifier(sys.argv[1])
preds = model.predict(sys.argv[3:], topk=3)
folder = predict_images(model, [sys.argv[2]], topk=1, batch_size=2)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
print(json.dumps({
    "preds": [[p.path, p.top] for p in preds],
    "folder": [[p.path, p.pred] for p in folder.predictions],
    "heavy": heavy,
}))
"""


def test_onnx_model_runs_without_torch(onnx_run, image_files) -> None:
    files = [str(p) for p in image_files]
    src = str(Path(cnnlab.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(onnx_run / "model.onnx"), str(image_files[0].parent),
         *files],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["heavy"] == []
    # The same images through cnnlab's own PyTorch path (model.safetensors, load_for_predict).
    model, _ = load_exported(onnx_run)
    with torch.inference_mode():
        probs = torch.softmax(
            torch.cat([model(load_for_predict(f, model.preprocess)) for f in files]), 1
        ).numpy()
    for (path, top), p in zip(got["preds"], probs, strict=True):
        order = np.argsort(-p)[:3]
        assert [c for c, _ in top] == [["ant", "bee", "wasp"][i] for i in order], path
        np.testing.assert_allclose([q for _, q in top], p[order], atol=1e-5)
    assert sorted(p for p, _ in got["folder"]) == sorted(files)


def test_onnx_classifier_refuses_files_it_cannot_use(tmp_path, onnx_run) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(RunError, match="bogus.onnx is not a loadable ONNX model"):
        deploy.OnnxClassifier(bogus)
    with pytest.raises(RunError, match="does not exist"):
        deploy.OnnxClassifier(tmp_path / "missing.onnx")
    import onnx

    proto = onnx.load(str(onnx_run / "model.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(RunError, match="carries no cnnlab preprocessing metadata"):
        deploy.OnnxClassifier(tmp_path / "bare.onnx")
