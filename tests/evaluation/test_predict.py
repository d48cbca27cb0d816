"""Predicting folders, globs and files with a run, a model.onnx or a model.torchscript.pt:
batched, bad files listed with their reason, CSV out."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.transforms import load_for_predict, resize_size
from cnnlab.deploy import DeployMetadata
from cnnlab.errors import ConfigError, DataError
from cnnlab.evaluation.predict import collect_images, open_predictor, predict_images
from cnnlab.export import export_model
from cnnlab.export.onnx import to_onnx
from cnnlab.export.torchscript import to_torchscript
from cnnlab.models import create_model
from cnnlab.models.spec import PreprocessSpec

CLASSES = ["cat", "dog", "fox", "owl"]
SPEC = PreprocessSpec((3, 32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear", 0.875)


def image(path: Path, seed: int, size: tuple[int, int] = (45, 38)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(path)
    return path


def export_run(run: Path, *, head_scale: float = 1.0) -> Path:
    """A run's exported weights plus its model.onnx and model.torchscript.pt (no training);
    `head_scale` multiplies the weights of the head's last layer (probabilities further from
    uniform, so that what differs between images shows)."""
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=4, in_chans=3, input_size=32).eval()
    if head_scale != 1.0:
        with torch.no_grad():
            last = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.mul_(head_scale)
            last.bias.zero_()
    model.preprocess = SPEC
    build = {"name": "smallcnn", "num_classes": 4, "in_chans": 3, "input_size": 32, "dropout": 0}
    export_model(model, run, classes=CLASSES, preprocess=SPEC, build=build)
    (run / "run.json").write_text('{"status": "finished"}')
    meta = DeployMetadata(
        tuple(CLASSES), (32, 32), resize_size(SPEC), SPEC.mean, SPEC.std, SPEC.interpolation,
        SPEC.crop_pct,
    )  # fmt: skip
    sample = torch.zeros(2, 3, 32, 32)
    to_onnx(model, sample, run / "model.onnx", metadata=meta.to_props())
    to_torchscript(model, sample, run / "model.torchscript.pt", metadata=meta.to_props())
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return export_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def folder(tmp_path) -> Path:
    """5 good images in nested folders, and files that are not (or not usable) images."""
    root = tmp_path / "photos"
    for k, rel in enumerate(["a.jpg", "b.png", "sub/c.jpg", "sub/deeper/d.png", "e.JPG"]):
        image(root / rel, seed=k)
    (root / "sub" / "truncated.jpg").write_bytes((root / "a.jpg").read_bytes()[:200])
    (root / "text.png").write_text("not a PNG")
    (root / "notes.txt").write_text("notes")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / ".hidden").mkdir()
    image(root / ".hidden" / "x.jpg", seed=9)
    return root


def expected_probs(run_dir: Path, files: list[str]) -> np.ndarray:
    from cnnlab.export import load_exported

    model, _ = load_exported(run_dir)
    with torch.inference_mode():
        x = torch.cat([load_for_predict(f, model.preprocess) for f in files])
        return torch.softmax(model(x), dim=1).numpy()


def test_collect_images_walks_folders_and_globs(folder, tmp_path) -> None:
    files, skipped = collect_images([folder, str(folder / "*.jpg"), tmp_path / "missing.png"])
    rel = [os.path.relpath(f, folder) for f in files]
    assert rel == [
        "a.jpg",
        "b.png",
        "e.JPG",
        "text.png",
        "sub/c.jpg",
        "sub/truncated.jpg",
        "sub/deeper/d.png",
    ]  # sorted per folder, each file once (the glob's a.jpg is a duplicate)
    assert {(os.path.basename(s.path), s.reason) for s in skipped} == {
        ("notes.txt", "not_image"),
        ("missing.png", "missing"),
    }
    with pytest.raises(DataError, match="no image files found"):
        collect_images([tmp_path / "nothing-here"])


@pytest.mark.parametrize("kind", ["run", "onnx", "torchscript"])
def test_predict_folder_batched_with_bad_files_listed(run_dir, folder, kind) -> None:
    source = {"run": run_dir, "onnx": run_dir / "model.onnx"}.get(
        kind, run_dir / "model.torchscript.pt"
    )
    predictor = open_predictor(source)
    result = predict_images(predictor, [folder], topk=3, batch_size=2)

    good = [p.path for p in result.predictions]
    assert [os.path.relpath(p, folder) for p in good] == [
        "a.jpg", "b.png", "e.JPG", "sub/c.jpg", "sub/deeper/d.png",
    ]  # fmt: skip
    reasons = {os.path.basename(s.path): s.reason for s in result.skipped}
    assert reasons == {"notes.txt": "not_image", "text.png": "unidentified",
                       "truncated.jpg": "truncated"}  # fmt: skip
    assert result.summary() == (
        "predicted 5 images; skipped 3 (not_image 1, unidentified 1, truncated 1)"
    )
    # Every backend gives PyTorch's probabilities for the run's model, batch size aside.
    probs = expected_probs(run_dir, good)
    for p, row in zip(result.predictions, probs, strict=True):
        order = np.argsort(-row)[:3]
        assert [c for c, _ in p.top] == [CLASSES[i] for i in order]
        np.testing.assert_allclose([q for _, q in p.top], row[order], atol=1e-5)


@pytest.mark.parametrize("kind", ["run", "onnx", "torchscript"])
def test_flip_tta_averages_each_image_with_its_mirror(tmp_path, folder, kind) -> None:
    from cnnlab.evaluation.tta import Tta
    from cnnlab.export import load_exported

    run_dir = export_run(tmp_path / "run", head_scale=30.0)
    source = {"run": run_dir, "onnx": run_dir / "model.onnx"}.get(
        kind, run_dir / "model.torchscript.pt"
    )
    result = predict_images(open_predictor(source), [folder], topk=4, batch_size=2, tta=Tta.FLIP)
    good = [p.path for p in result.predictions]
    model, _ = load_exported(run_dir)
    with torch.inference_mode():
        x = torch.cat([load_for_predict(f, model.preprocess) for f in good])
        probs = ((model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2).numpy()
    # the mirror images change the probabilities by 100x the tolerance below
    assert np.abs(probs - expected_probs(run_dir, good)).max() > 1e-3
    for p, row in zip(result.predictions, probs, strict=True):
        order = np.argsort(-row)
        assert [c for c, _ in p.top] == [CLASSES[i] for i in order]
        np.testing.assert_allclose([q for _, q in p.top], row[order], atol=1e-5)


def test_results_do_not_depend_on_batch_size_or_workers(run_dir, folder) -> None:
    predictor = open_predictor(run_dir / "model.onnx")
    one = predict_images(predictor, [folder], batch_size=1, workers=1)
    many = predict_images(predictor, [folder], batch_size=64, workers=4)
    assert [p.path for p in one.predictions] == [p.path for p in many.predictions]
    for a, b in zip(one.predictions, many.predictions, strict=True):
        assert [c for c, _ in a.top] == [c for c, _ in b.top]
        np.testing.assert_allclose([q for _, q in a.top], [q for _, q in b.top], atol=1e-6)


def test_csv_has_a_row_per_file(run_dir, folder, tmp_path) -> None:
    result = predict_images(open_predictor(run_dir / "model.onnx"), [folder], topk=2)
    out = result.write_csv(tmp_path / "out.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "pred", "prob", "pred_2", "prob_2", "error"]
    assert len(rows) == 5 + 3
    by_path = {r["path"]: r for r in rows}
    for p in result.predictions:
        r = by_path[p.path]
        assert (r["pred"], r["pred_2"], r["error"]) == (p.top[0][0], p.top[1][0], "")
        assert math.isclose(float(r["prob"]), p.prob, abs_tol=1e-6)
    bad = by_path[str(folder / "sub" / "truncated.jpg")]
    assert bad["pred"] == "" and bad["error"].startswith("truncated: ")


def test_bad_arguments(run_dir, folder) -> None:
    predictor = open_predictor(run_dir / "model.onnx")
    with pytest.raises(ConfigError, match="topk must be at least 1"):
        predict_images(predictor, [folder], topk=0)
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        predict_images(predictor, [folder], batch_size=0)
