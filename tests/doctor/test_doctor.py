"""`diagnose` and `epoch_check`: the pure check on synthetic histories, the whole doctor on real
tiny Fashion-MNIST runs (600 images, 2 epochs)."""

import contextlib
import json
import math

import pytest

from cnnlab.doctor import Code, Severity, diagnose, epoch_check, one_line
from tests.conftest import QUICK

LN2 = math.log(2)


def row(epoch, train_loss, val_acc, train_acc=0.5, grad=1.0):
    return {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": 0.7,
            "val_acc": val_acc, "grad_norm": grad}  # fmt: skip


COUNTS = {"train": [120, 120], "val": [30, 30]}  # batch 8: 30 steps per epoch
CONFIG = {"data": {"batch_size": 8}, "optim": {"lr": 0.01, "optimizer": "sgd"}, "model": {}}


def test_epoch_check_fires_on_ln2_with_one_predicted_class():
    fs = epoch_check(
        [row(0, 0.6931, 0.5)], [{"val_pred_histogram": [60, 0]}], num_classes=2,
        class_counts=COUNTS, config=CONFIG, classes=["ants", "bees"],
    )  # fmt: skip
    assert [f.code for f in fs] == [Code.STUCK_AT_CHANCE] and fs[0].severity is Severity.ERROR
    assert f"ln 2 = {LN2:.3f}" in fs[0].title and "'ants'" in fs[0].title
    assert fs[0].evidence["optimizer_steps"] == 30
    assert one_line(fs[0]).startswith("error: loss is 0.693")


def test_epoch_check_is_quiet_when_learning_or_too_early():
    kw = dict(num_classes=2, class_counts=COUNTS, config=CONFIG)
    one = [{"val_pred_histogram": [60, 0]}]
    assert epoch_check([row(0, 0.62, 0.5)], one, **kw) == []  # loss 0.89 x ln 2: learning
    assert epoch_check([row(0, 0.6931, 0.5)], [{"val_pred_histogram": [40, 20]}], **kw) == []
    few = {"train": [20, 20], "val": [30, 30]}  # 5 steps: too early to tell
    assert epoch_check([row(0, 0.6931, 0.5)], one, **{**kw, "class_counts": few}) == []
    rows = [row(0, 0.6931, 0.5), row(1, 0.6931, 0.5)]
    assert epoch_check(rows, one * 2, **{**kw, "class_counts": few}) == []  # 10 < 20 steps
    rows = [row(e, 0.6931, 0.5) for e in range(4)]
    assert len(epoch_check(rows, one * 4, **{**kw, "class_counts": few})) == 1  # 20 steps


def test_epoch_check_reports_exploding_gradients():
    rows = [row(0, 0.6, 0.7, grad=2.0), row(1, 0.5, 0.75, grad=450.0)]
    hist = [{"val_pred_histogram": [30, 30]}] * 2
    fs = epoch_check(rows, hist, num_classes=2, class_counts=COUNTS, config=CONFIG)
    assert [f.code for f in fs] == [Code.EXPLODING_GRADIENTS]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from cnnlab.data.fashion_mnist import find_fashion_mnist
    from cnnlab.errors import DataError

    try:
        find_fashion_mnist()
    except DataError:
        pytest.skip("Fashion-MNIST is not installed")
    import cnnlab

    runs = tmp_path_factory.mktemp("runs")
    cnnlab.train(QUICK, name="quick", runs_dir=runs, log=lambda s: None)
    return runs / "quick"


def test_diagnose_a_real_run_writes_doctor_json_with_measured_probes(quick_run):
    report = diagnose(quick_run)
    saved = json.loads((quick_run / "doctor.json").read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    p = report.probes
    # a fresh smallcnn's untrained outputs: loss near ln 10
    assert abs(p["init_loss"] - math.log(10)) < 0.3
    # from scratch, cnnlab normalises with the training split's own statistics
    assert abs(p["input_stats"]["mean"][0]) < 0.2 and 0.8 < p["input_stats"]["std"][0] < 1.2
    assert p["duplicates"]["val"] == {"images": 600, "copies_of_train": 0}
    assert p["overfit"]["fitted"] and p["update_ratio"]["median"] < 0.3
    assert p["val"]["images"] == 600 and len(p["val"]["recall"]) == 10
    # the probe's validation accuracy is the run's: same best model, same images
    history = (quick_run / "metrics.csv").read_text().splitlines()
    best = max(float(r.split(",")[4]) for r in history[1:])
    assert p["val"]["accuracy"] == pytest.approx(best, abs=1e-6)
    # 2 epochs of 600 images is the "too few steps" case: what the doctor must not miss
    assert not report.healthy and report.top.code in (Code.UNDERTRAINED, Code.BN_MISMATCH)


def test_diagnose_without_probes_uses_only_the_files(quick_run):
    report = diagnose(quick_run, probe=False, write=False)
    assert report.probes == {} and "probes not run" in report.notes[0]


def test_lr_x1000_is_diagnosed_as_lr_too_high(tmp_path):
    import cnnlab
    from cnnlab.errors import CnnlabError

    cfg = {**QUICK, "optim": {"lr": 100.0}}
    with contextlib.suppress(CnnlabError):  # diverging is one of the outcomes
        cnnlab.train(cfg, name="hot", runs_dir=tmp_path, log=lambda s: None)
    report = diagnose(tmp_path / "hot")
    assert report.top.code is Code.LR_TOO_HIGH and report.top.severity is Severity.ERROR
    assert report.top.evidence["update_ratio_median"] > 1.0


def test_a_run_whose_model_and_data_are_gone_still_gets_the_file_based_findings(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "diverged"}))
    (run / "config.yaml").write_text("data: {path: /nonexistent/photos, dataset: folder}\n")
    (run / "divergence.json").write_text(json.dumps({"message": "loss became nan at step 3"}))
    report = diagnose(run)
    assert report.top.code is Code.DIVERGED
    assert report.notes and report.notes[0].startswith("probes skipped")
    assert json.loads((run / "doctor.json").read_text())["diagnosis"] == "diverged"
