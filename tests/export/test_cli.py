"""`cnnlab export` and `cnnlab predict` through the CLI (cnnlab.cli.main), and their Python twins
`cnnlab.export_run` and `cnnlab.predict`: printed lines, export.json, exit codes, folders, globs
and CSV, a model.onnx predicting like its run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.data.transforms import load_for_predict
from cnnlab.export import load_exported
from tests.export.test_run import reference, val_files


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def smallcnn(run_of, tmp_path) -> Path:
    """A fresh copy of the smallcnn run (28 px, grayscale): each test writes its own exports."""
    return Path(shutil.copytree(run_of("smallcnn", 28), tmp_path / "run"))


def test_export_prints_the_parity_line_and_writes_export_json(smallcnn, capsys) -> None:
    code, out, err = run_cli(capsys, "export", smallcnn)
    assert code == 0, err
    exported, parity = out.splitlines()[:2]
    assert exported.startswith(f"exported {smallcnn / 'model.onnx'} (ONNX opset ")
    assert "dynamo exporter, dynamic batch" in exported
    n = len(val_files(smallcnn))
    assert parity.startswith(f"parity with PyTorch on {n} val images (onnxruntime ")
    assert parity.endswith(f"top-1 agreement {n}/{n} (100%)")
    record = json.loads((smallcnn / "export.json").read_text())["onnx"]
    assert record["kept"] and f"max |Δlogit| {record['parity']['max_abs_diff']:.1e} " in parity
    # The file computes what the run's model computes on its validation files, measured here
    # without the exporter's code.
    _, x, ref = reference(smallcnn)
    session = ort.InferenceSession(str(smallcnn / "model.onnx"))
    out_logits = session.run(None, {"image": x.numpy()})[0]
    assert np.abs(out_logits - ref).max() <= record["parity"]["max_abs_diff"] + 1e-6

    code, out, err = run_cli(capsys, "export", smallcnn, "--format", "torchscript", "--json")
    assert code == 0, err
    result = json.loads(out)  # nothing but the JSON on stdout
    assert result["format"] == "torchscript" and result["path"] == str(
        smallcnn / "model.torchscript.pt"
    )
    assert result["parity"]["passed"] and result["parity"]["images"] == n
    both = json.loads((smallcnn / "export.json").read_text())
    assert set(both) == {"onnx", "torchscript"}


def test_fixed_batch_export_through_the_cli(smallcnn, capsys) -> None:
    code, out, err = run_cli(capsys, "export", smallcnn, "--fixed-batch", "--opset", "18")
    assert code == 0, err
    assert "ONNX opset 18" in out and ", batch 1," in out
    session = ort.InferenceSession(str(smallcnn / "model.onnx"))
    assert session.get_inputs()[0].shape == [1, 1, 28, 28]


def test_parity_failure_is_one_line_naming_the_worst_image(run_of, tmp_path, capsys) -> None:
    # ResNet18: ONNX Runtime's kernels differ from PyTorch's in the last bits, so a tolerance
    # of 1e-12 fails for real
    run = Path(shutil.copytree(run_of("resnet18", 32), tmp_path / "run"))
    code, out, err = run_cli(capsys, "export", run, "--atol", "1e-12", "--rtol", "0")
    assert code == 5
    (line,) = err.strip().splitlines()
    assert line.startswith("error: the onnx export does not reproduce the PyTorch model: ")
    worst = json.loads((run / "export.json").read_text())["onnx"]["parity"]["worst_image"]
    assert f"worst image {worst} " in line and Path(worst) in val_files(run)
    assert "larger --atol" in line or "an export problem" in line
    assert not (run / "model.onnx").exists()  # a failed export is not kept


def test_bad_export_requests_are_usage_errors(smallcnn, capsys) -> None:
    code, _, err = run_cli(capsys, "export", smallcnn, "--format", "torchscript", "--opset", "18")
    assert code == 2 and err.strip() == (
        "error: --opset applies to ONNX only; drop it for --format torchscript"
    )
    with pytest.raises(SystemExit) as exit_:  # argparse: the two are mutually exclusive
        main(["export", str(smallcnn), "--fixed-batch", "--dynamic-batch"])
    assert exit_.value.code == 2
    code, _, err = run_cli(capsys, "export", smallcnn.parent / "nowhere")
    assert code == 5 and "not found" in err


def test_python_twin_is_export_run_beside_the_export_package(smallcnn) -> None:
    import cnnlab.export as package

    assert cnnlab.export is package  # the package keeps its name
    assert cnnlab.export_run.__module__ == "cnnlab.api" and "export_run" in dir(cnnlab)
    lines: list[str] = []
    result = cnnlab.export_run(smallcnn, format="onnx", dynamic_batch=False, log=lines.append)
    assert result.parity.passed and result.path == smallcnn / "model.onnx"
    assert lines == [result.line(), result.parity.line()]


# ---------------------------------------------------------------------------------------------
# predict


@pytest.fixture
def photos(smallcnn, tmp_path) -> Path:
    """The run's validation images in nested folders, a non-image file and a truncated JPEG."""
    root = tmp_path / "photos"
    for f in val_files(smallcnn):
        dest = root / f.parent.name / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    (root / "notes.txt").write_text("taken in the garden")
    return root


def pytorch_top1(run: Path, files: list[Path]) -> tuple[list[str], np.ndarray]:
    """The class and probability PyTorch gives each file, image by image, as `predict` did."""
    model, card = load_exported(run)
    with torch.inference_mode():
        logits = torch.cat([model(load_for_predict(f, model.preprocess)) for f in files])
    probs = torch.softmax(logits, dim=1)
    return [card["classes"][i] for i in probs.argmax(1)], probs.max(1).values.numpy()


@pytest.mark.parametrize("source", ["run", "onnx"])
def test_predict_a_folder_to_csv(smallcnn, photos, capsys, tmp_path, source) -> None:
    if source == "onnx":
        cnnlab.export_run(smallcnn, log=lambda s: None)
    model = smallcnn / "model.onnx" if source == "onnx" else smallcnn
    out_csv = tmp_path / "out.csv"
    code, out, err = run_cli(capsys, "predict", model, photos, "--csv", out_csv, "--topk", "2")
    # notes.txt is listed, but a non-image file in a folder is not a failure
    files = sorted(p for p in photos.rglob("*") if p.is_file() and p.suffix != ".txt")
    assert code == 0 and err == ""
    assert out.strip() == f"predicted {len(files)} images; skipped 1 (not_image 1); wrote {out_csv}"
    with open(out_csv, newline="") as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh)}
    assert rows[str(photos / "notes.txt")]["error"].startswith("not_image: ")
    classes, probs = pytorch_top1(smallcnn, files)
    for f, cls, prob in zip(files, classes, probs, strict=True):
        row = rows[str(f)]
        assert row["pred"] == cls and row["error"] == "" and row["pred_2"] != cls
        assert float(row["prob"]) == pytest.approx(float(prob), abs=1e-4)


def test_predict_globs_batched_with_a_bad_file(smallcnn, photos, capsys, tmp_path) -> None:
    broken = photos / "bees" / "broken.png"
    broken.write_bytes(next(photos.rglob("*.png")).read_bytes()[:60])
    pattern = str(photos / "*" / "*.png")
    code, out, err = run_cli(capsys, "predict", smallcnn, pattern, "--json", "--batch-size", "4")
    assert code == 4
    (line,) = err.strip().splitlines()  # one line, after the good predictions were printed
    assert line.startswith("error: 1 of ") and f"{broken} (truncated)" in line
    records = json.loads(out)
    good = sorted(p for p in photos.glob("*/*.png") if p != broken)
    assert [r["image"] for r in records[:-1]] == [str(p) for p in good]
    assert records[-1] == {
        "image": str(broken),
        "skipped": {"reason": "truncated", "detail": records[-1]["skipped"]["detail"]},
    }
    classes, probs = pytorch_top1(smallcnn, good)
    assert [r["top"][0]["class"] for r in records[:-1]] == classes
    np.testing.assert_allclose([r["top"][0]["prob"] for r in records[:-1]], probs, atol=1e-5)
    # batch size changes nothing but speed
    code, out, _ = run_cli(capsys, "predict", smallcnn, *good, "--json", "--batch-size", "1")
    one = json.loads(out)
    assert code == 0 and [r["image"] for r in one] == [r["image"] for r in records[:-1]]
    for a, b in zip(one, records[:-1], strict=True):
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        np.testing.assert_allclose([t["prob"] for t in a["top"]], [t["prob"] for t in b["top"]],
                                   atol=1e-6)  # fmt: skip


def test_predict_prints_good_files_and_lists_the_missing(smallcnn, photos, capsys) -> None:
    image = next(photos.rglob("*.jpg"))
    code, out, err = run_cli(capsys, "predict", smallcnn, image, photos / "gone.jpg")
    assert code == 4 and f"{photos / 'gone.jpg'} (missing)" in err
    lines = out.splitlines()
    assert lines[0] == str(image) and len(lines) == 1 + 3 + 2  # 3 classes, then the skipped one
    assert lines[-2:] == [str(photos / "gone.jpg"), "  skipped: missing (no such file or folder)"]


def test_api_predict_returns_predictions_and_skipped(smallcnn, photos, tmp_path) -> None:
    result = cnnlab.predict(smallcnn, [photos], topk=1, csv=tmp_path / "p.csv")
    assert len(result.predictions) == len(val_files(smallcnn)) and not result.bad
    assert [s.reason for s in result.skipped] == ["not_image"]
    assert all(len(p.top) == 1 for p in result.predictions)
    assert (tmp_path / "p.csv").read_text().count("\n") == len(result.predictions) + 2
