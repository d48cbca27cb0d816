"""End to end through the CLI: a short real training run on a Fashion-MNIST subset."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from cnnlab.cli import main

# batch 32: 38 steps, enough for BatchNorm's running statistics to settle in a 2-epoch run
ARGS = ["--subset", "600", "--batch-size", "32", "--epochs", "2", "--threads", "2", "--seed", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.conftest import _fmnist_present

    if not _fmnist_present():
        pytest.skip("Fashion-MNIST is not installed (`make data` installs it)")
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", "--name", "quick", "--runs-dir", str(runs), *ARGS]) == 0
    return runs / "quick"


def test_run_folder_is_complete_and_self_describing(trained):
    for name in [
        "config.yaml", "classes.json", "metrics.csv", "best.ckpt", "last.ckpt",
        "model.safetensors", "model.json", "curves.png", "test.json", "confusion_matrix.png",
        "summary.md", "environment.json", "run.json", "signals.jsonl",
    ]:  # fmt: skip
        assert (trained / name).is_file(), name
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["data"]["subset"] == 600
    assert json.loads((trained / "classes.json").read_text())[9] == "Ankle boot"
    status = json.loads((trained / "run.json").read_text())
    assert status["status"] == "finished" and status["epochs_run"] == 2
    assert status["stop_reason"] == "max epochs"
    env = json.loads((trained / "environment.json").read_text())
    # --threads 2, at most the CPUs this process may use (1 on a pinned test worker)
    assert env["torch"] and env["torch_threads"] == min(2, len(os.sched_getaffinity(0)))


def test_metrics_are_sane(trained):
    lines = (trained / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:6] == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # counted from 1, as people count
    # well above chance (10%) after 20 steps, and losses finite and falling
    assert float(rows[-1]["val_acc"]) > 0.3
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    test = json.loads((trained / "test.json").read_text())
    assert test["samples"] == 600 and test["accuracy"] > 0.3
    assert set(test["per_class"]) == set(json.loads((trained / "classes.json").read_text()))
    assert {"precision", "recall", "f1"} <= set(test["macro"]) and "top3" in test["topk"]
    signals = [json.loads(s) for s in (trained / "signals.jsonl").read_text().splitlines()]
    assert signals[-1]["grad_norm_per_layer"] and sum(signals[-1]["val_pred_histogram"]) == 600


def test_training_compute_is_the_measured_step_times_the_images(trained):
    """metrics.csv's train_tflop: FLOPs of a real forward + backward step (torch's counter, on
    the CPU) per image, times the 600 images of each epoch, summed."""
    import torch
    import torch.nn.functional as F

    from cnnlab.engine.flops import flop_counter
    from cnnlab.export import load_exported

    model, _ = load_exported(trained)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    with flop_counter() as counter:
        F.cross_entropy(model.train()(x), y).backward()
    per_image = counter.get_total_flops() / 4
    rows = _rows(trained)
    for i, row in enumerate(rows, 1):
        assert float(row["train_tflop"]) == pytest.approx(per_image * 600 * i / 1e12, rel=1e-5)
    status = json.loads((trained / "run.json").read_text())
    assert status["train_tflop"] == pytest.approx(float(rows[-1]["train_tflop"]), rel=1e-5)
    assert "training compute" in (trained / "summary.md").read_text()


def test_rerun_of_finished_run_evaluates_instead_of_retraining(trained, capsys):
    before = (trained / "best.ckpt").stat().st_mtime_ns
    assert main(["train", "--name", "quick", "--runs-dir", str(trained.parent), *ARGS]) == 0
    out = capsys.readouterr().out
    assert "already finished" in out and "test accuracy" in out
    assert (trained / "best.ckpt").stat().st_mtime_ns == before


def test_evaluate_val_split_and_json(trained, capsys):
    assert main(["evaluate", str(trained), "--split", "val", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "val" and report["samples"] == 600


def test_evaluate_and_predict_with_flip_tta(trained, tmp_path, capsys):
    import torch
    from PIL import Image

    from cnnlab.data.fashion_mnist import load_fashion_mnist
    from cnnlab.export import load_exported

    assert main(["evaluate", str(trained), "--split", "val", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(trained), "--split", "val", "--tta", "flip", "--json"]) == 0
    flip = json.loads(capsys.readouterr().out)
    assert (plain["tta"], flip["tta"]) == ("none", "flip")
    assert flip["samples"] == plain["samples"] and flip["loss"] != plain["loss"]

    images, _ = load_fashion_mnist("test")
    paths = []
    for i in range(3):
        Image.fromarray(np.asarray(images[i])).save(tmp_path / f"img{i}.png")
        paths.append(str(tmp_path / f"img{i}.png"))
    assert main(["predict", str(trained), *paths, "--topk", "10", "--tta", "flip", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    model, meta = load_exported(trained)
    mean, std = meta["preprocess"]["mean"][0], meta["preprocess"]["std"][0]
    x = (torch.from_numpy(np.asarray(images[:3], dtype=np.float32) / 255.0)[:, None] - mean) / std
    with torch.no_grad():
        probs = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    classes = json.loads((trained / "classes.json").read_text())
    for r, p in zip(results, probs, strict=True):
        got = {t["class"]: t["prob"] for t in r["top"]}
        assert [got[c] for c in classes] == pytest.approx(p.tolist(), abs=1e-5)


def test_predict_uses_training_preprocessing(trained, tmp_path, capsys):
    from PIL import Image

    from cnnlab.data.fashion_mnist import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    paths = []
    for i in range(4):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(np.asarray(images[i])).save(p)
        paths.append(str(p))
    assert main(["predict", str(trained), *paths, "--topk", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 4 and all(len(r["top"]) == 3 for r in results)
    # the same numbers from the saved model fed by hand with model.json's normalisation
    import torch

    from cnnlab.export import load_exported

    model, meta = load_exported(trained)
    mean, std = meta["preprocess"]["mean"][0], meta["preprocess"]["std"][0]
    x = torch.from_numpy(np.asarray(images[:4], dtype=np.float32) / 255.0)[:, None]
    with torch.no_grad():
        probs = torch.softmax(model((x - mean) / std), dim=1)
    classes = json.loads((trained / "classes.json").read_text())
    for r, p in zip(results, probs, strict=True):
        top = torch.topk(p, 3)
        assert [t["class"] for t in r["top"]] == [classes[i] for i in top.indices]
        assert [t["prob"] for t in r["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_report_is_written_and_explain_draws_heatmaps(trained, tmp_path, capsys):
    from PIL import Image

    from cnnlab.data.fashion_mnist import load_fashion_mnist

    page = (trained / "report.html").read_text()  # written at the end of training
    test = json.loads((trained / "test.json").read_text())
    assert f'id="headline-accuracy" data-value="{test["accuracy"]!r}"' in page
    assert "<script" not in page
    before = (trained / "report.html").stat().st_mtime_ns
    assert main(["report", str(trained), "--mistakes", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {trained / 'report.html'}"
    assert (trained / "report.html").stat().st_mtime_ns > before
    images, _ = load_fashion_mnist("test")
    shoe = tmp_path / "shoe.png"
    Image.fromarray(np.asarray(images[0])).save(shoe)  # test image 0 is an ankle boot
    out = tmp_path / "cams"
    argv = ["explain", str(trained), str(shoe), "--class", "Sneaker", "--out", str(out)]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{shoe}: ") and "Sneaker" in line
    assert line.endswith(str(out / "shoe.gradcam.png")) and (out / "shoe.gradcam.png").is_file()
    assert main(["explain", str(trained), str(shoe), "--class", "Snekaer"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_one_validation_loss_everywhere(trained, capsys):
    """Training's val loss for the best epoch is what `evaluate --split val` reports."""
    assert main(["evaluate", str(trained), "--split", "val", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    status = json.loads((trained / "run.json").read_text())
    rows = {int(r["epoch"]): r for r in _rows(trained)}
    assert report["loss"] == pytest.approx(float(rows[status["best_epoch"]]["val_loss"]), rel=1e-4)


def _rows(run):
    import csv

    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["train", "--model", "resnet9000"], 2, "unknown model 'resnet9000'"),
        (["train", "--lr", "0"], 2, "learning rate must be a number > 0"),
        (["train", "--lr", "inf"], 2, "learning rate must be a number > 0, got inf"),
        (["train", "--batch-size", "0"], 2, "batch size must be at least 1"),
        (["train", "--epochs", "0"], 2, "epochs must be at least 1"),
        (["train", "--optimizer", "rmsprop"], 2, "unknown value for optim.optimizer"),
        (["train", "--set", "optim.lrr=1"], 2, "unknown config key 'optim.lrr'"),
        (["train", "--data", "/nonexistent/folder"], 4, "/nonexistent/folder"),
        (["train", "--name", "../escape"], 2, "not a plain folder name"),
        (["train", "--name", "/tmp/abs"], 2, "not a plain folder name"),
        (["train", "--pretrained"], 2, "models that have: "),
        (["train", "--devices", "3"], 2, "does not split over 3 processes"),
        (["train", "--num-nodes", "2"], 2, "needs a launcher"),
        (["train", "--image-size", "100000"], 2, "too large"),
        (["train", "--config", "/"], 2, "is a folder; pass a YAML file"),
        (["train", "--data-dir", "/nonexistent"], 4, "--data-dir /nonexistent is not a folder"),
        (["train", "--resume", "x", "--name", "y"], 2, "drop --config, --name and --force"),
        (["evaluate", "/nonexistent/run"], 5, "not found"),
        (["predict", "/nonexistent/run", "x.png"], 5, "not found"),
    ],
)
def test_errors_are_one_line_with_exit_code(argv, code, message, capsys, runs_dir, monkeypatch):
    for key in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert "\n" not in err and "Traceback" not in err
    # a command that failed before training claims no run name and writes nothing
    assert not runs_dir.exists() or not list(runs_dir.iterdir())


def test_a_set_up_that_fails_on_the_data_leaves_the_name_free(tmp_path, capsys):
    runs = tmp_path / "runs"
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "cats" / "notes.txt").write_text("no images here")
    assert main(["train", "--name", "x", "--runs-dir", str(runs), "--data", str(empty)]) == 4
    assert "error: " in capsys.readouterr().err
    assert not (runs / "x").exists()  # the scan ran inside the run folder, then released it


def test_missing_fashion_mnist_says_how_to_get_it(runs_dir, tmp_path, monkeypatch, capsys):
    import cnnlab.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "none")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    assert main(["train", "--epochs", "1"]) == 4
    assert "cnnlab data download fashion-mnist" in capsys.readouterr().err


def test_python_m_entry_point_and_debug_traceback(runs_dir):
    cmd = [sys.executable, "-m", "cnnlab", "train", "--lr", "-1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    done = subprocess.run(
        [*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" in done.stderr
