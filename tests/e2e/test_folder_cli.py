"""Training on an image folder through the CLI: layout, skipped files, manifest, evaluate, predict."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main


@pytest.fixture
def photos(tmp_path):
    """cats are bright, dogs are dark; one truncated JPEG and one text file named .jpg."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for cls, base in (("cat", 200), ("dog", 50)):
        (root / cls).mkdir(parents=True)
        for i in range(20):
            img = np.clip(base + rng.normal(0, 20, (40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / cls / f"{i}.jpg", quality=90)
    good = (root / "cat" / "0.jpg").read_bytes()
    (root / "cat" / "broken.jpg").write_bytes(good[: len(good) // 2])
    (root / "dog" / "notes.jpg").write_text("not an image")
    return root


def test_train_evaluate_predict_on_a_folder(photos, tmp_path, capsys):
    runs = tmp_path / "runs"
    # smallcnn_dense: 24 training images and 6 steps an epoch are too few for the
    # depthwise default to get going; this test is about the folder pipeline
    args = ["train", "--data", str(photos), "--name", "pets", "--runs-dir", str(runs),
            "--model", "smallcnn_dense", "--image-size", "32", "--epochs", "2",
            "--batch-size", "8", "--val-fraction", "0.2", "--test-fraction", "0.2",
            "--lr", "0.05"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "truncated" in out or "skipped" in out
    run = runs / "pets"
    assert json.loads((run / "classes.json").read_text()) == ["cat", "dog"]
    with open(run / "skipped.csv") as fh:
        skipped = {r["path"].split("/")[-1]: r["reason"] for r in csv.DictReader(fh)}
    assert skipped == {"broken.jpg": "truncated", "notes.jpg": "unidentified"}
    assert (run / "split_manifest.csv").is_file()
    test = json.loads((run / "test.json").read_text())
    assert test["samples"] == 8 and test["accuracy"] >= 0.75  # brightness is easy
    assert main(["evaluate", str(run), "--split", "val"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), str(photos / "dog" / "3.jpg"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result[0]["top"][0]["class"] == "dog"
    assert sum(t["prob"] for t in result[0]["top"]) == pytest.approx(1.0, abs=1e-5)
    # colour photos train in colour with the default model (made for grayscale Fashion-MNIST)
    arch = json.loads((run / "model.json").read_text())["architecture"]
    assert arch["name"] == "smallcnn_dense" and arch["in_chans"] == 3
    # other data: all of it, reported apart; the run's own report stays as it was
    own = {n: (run / n).stat().st_mtime_ns for n in ("test.json", "val.json", "summary.md")}
    assert main(["evaluate", str(run), "--data", str(photos), "--json"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["samples"] == 40  # every good image (20 + 20; 2 bad files skipped), no split
    reports = list((run / "evaluations").glob("*/test.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["samples"] == 40
    assert {n: (run / n).stat().st_mtime_ns for n in own} == own
