"""`cnnlab train --logger tensorboard` end to end: event files next to metrics.csv, the test
report at the end, and a resume through the CLI that continues the same curves."""

import json
import sys
import time

import pytest
import yaml

from cnnlab.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402

pytestmark = pytest.mark.usefixtures("fmnist")
# 600 images in batches of 32: 19 steps per epoch, which 10 (the batch-event interval) does
# not divide, so the batch events must line up across the resume by themselves
ARGS = ["--subset", "600", "--batch-size", "32", "--threads", "2", "--seed", "0"]
STEPS = 19


def _read(folder):
    acc = ea.EventAccumulator(
        str(folder), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0}
    )
    acc.Reload()
    return acc


def _steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


def test_tensorboard_logger_and_resume_through_the_cli(tmp_path):
    run = tmp_path / "tb"
    argv = ["train", "--name", "tb", "--runs-dir", str(tmp_path), *ARGS, "--epochs", "1"]
    assert main([*argv, "--logger", "tensorboard"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["logger"] == "tensorboard"
    assert list((run / "tensorboard/train").glob("events.out.tfevents.*"))
    time.sleep(1.1)  # event file names start with the second: keep the sessions' files in order
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0

    train, val = _read(run / "tensorboard/train"), _read(run / "tensorboard/validation")
    # one point per epoch at its last step, batch points every 10 steps: no gap, no duplicate
    assert _steps(train, "epoch_loss") == [STEPS, 2 * STEPS]
    assert _steps(val, "epoch_accuracy") == [STEPS, 2 * STEPS]
    assert _steps(train, "batch_loss") == list(range(10, 2 * STEPS + 1, 10))
    assert _steps(train, "lr/head") == list(range(10, 2 * STEPS + 1, 10))
    assert [e.value for e in train.Scalars("epoch")] == [1, 2]
    # the curves are metrics.csv's numbers
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    val_acc = [float(r[header.index("val_acc")]) for r in rows]
    assert [e.value for e in val.Scalars("epoch_accuracy")] == pytest.approx(val_acc, abs=1e-6)
    assert any(t.startswith("grad_norm/") for t in train.Tags()["histograms"])

    # each session ends with the test report at its last step; the last one is test.json's
    test = _read(run / "tensorboard/test")
    report = json.loads((run / "test.json").read_text())
    assert _steps(test, "accuracy") == [STEPS, 2 * STEPS]
    assert test.Scalars("accuracy")[-1].value == pytest.approx(report["accuracy"], abs=1e-6)
    image = test.Images("confusion_matrix")[-1]
    assert image.step == 2 * STEPS and image.width > 100


def test_default_logger_writes_no_event_files(tmp_path):
    argv = ["train", "--name", "csv", "--runs-dir", str(tmp_path), *ARGS, "--epochs", "1"]
    assert main(argv) == 0
    assert (tmp_path / "csv/metrics.csv").is_file() and not (tmp_path / "csv/tensorboard").exists()


def test_missing_tensorboard_is_a_one_line_error_naming_the_extra(capsys, runs_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    assert main(["train", "--logger", "tensorboard", *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert 'pip install "cnnlab[tensorboard]"' in err
    assert not runs_dir.exists()  # said before any run folder exists
