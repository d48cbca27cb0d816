"""The audit inside `cnnlab train`: warnings, audit.json in the run folder, --audit off/full."""

import json
import shutil

import pytest
from audittree import RandomFeatures, make_tree, photo, save

from cnnlab.audit import Code, Finding, Severity
from cnnlab.audit.findings import AuditReport
from cnnlab.audit.run import audit_for_run, warning_lines
from cnnlab.cli import main
from cnnlab.errors import ConfigError

# smallcnn_dense at 32 px for one epoch: the run is about the audit, not the model
TRAIN = ["--model", "smallcnn_dense", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
         "--threads", "2", "--lr", "0.05"]  # fmt: skip


@pytest.fixture
def clean(tmp_path):
    return make_tree(tmp_path / "clean", per_class=6, val_per_class=2)


@pytest.fixture
def leaky(tmp_path):
    root = make_tree(tmp_path / "leaky", per_class=6, val_per_class=2)
    shutil.copyfile(root / "train/blue/blue_02.jpg", root / "val/blue/leak.jpg")
    a = photo(500, tint="red")
    save(root / "train/red/twin_a.png", a)
    save(root / "train/red/twin_b.png", a)  # the same pixels twice inside train
    return root


def train(data, runs, name, *extra):
    return main(["train", "--data", str(data), "--name", name, "--runs-dir", str(runs),
                 *TRAIN, *extra])  # fmt: skip


def audit_lines(text):
    return [line for line in text.splitlines() if line.startswith("warning: audit:")]


def test_train_warns_once_per_kind_and_writes_audit_json(leaky, tmp_path, capsys):
    assert train(leaky, tmp_path / "runs", "leak") == 0
    lines = audit_lines(capsys.readouterr().out)
    assert len(lines) == 2  # cross-split first (an error), then the copy inside train
    assert lines[0].startswith("warning: audit: 1 image appears in more than one split (1 exact")
    assert "delete the 1 extra copy" in lines[0] and "audit.json" in lines[0]
    assert "stored more than once in the same split" in lines[1]
    report = json.loads((tmp_path / "runs" / "leak" / "audit.json").read_text())
    codes = [f["code"] for f in report["findings"]]
    assert codes == ["cross_split_duplicate", "exact_duplicate"]
    assert report["findings"][0]["files"] == ["val/blue/leak.jpg", "train/blue/blue_02.jpg"]
    assert set(report["findings"][1]["files"]) == {"train/red/twin_a.png", "train/red/twin_b.png"}
    # the run's own split: every file of split_manifest.csv was audited, in its split
    rows = (tmp_path / "runs" / "leak" / "split_manifest.csv").read_text().splitlines()[1:]
    assert report["data"]["images"] == {"train": 14, "val": 5} and len(rows) == 19
    assert report["checks"]["label_issue"] == "skipped"  # fast: duplicates only


def test_clean_data_gives_no_warning_and_off_skips_the_audit(clean, tmp_path, capsys):
    assert train(clean, tmp_path / "runs", "clean") == 0
    assert audit_lines(capsys.readouterr().out) == []
    report = json.loads((tmp_path / "runs" / "clean" / "audit.json").read_text())
    assert report["findings"] == [] and report["checks"]["exact_duplicate"] == "ran"
    assert train(clean, tmp_path / "runs", "off", "--audit", "off") == 0
    assert audit_lines(capsys.readouterr().out) == []
    assert not (tmp_path / "runs" / "off" / "audit.json").exists()
    assert (tmp_path / "runs" / "off" / "run.json").is_file()


def bundle_of(data, cache_dir):
    from cnnlab import api
    from cnnlab.data.build import build_data
    from cnnlab.plan import make_plan

    cfg = api.resolve_config(None, {"data": str(data), "image_size": 32,
                                    "model": "smallcnn_dense"})  # fmt: skip
    return build_data(cfg, make_plan(cfg, cache_dir / "run").inputs, log=lambda s: None)


def test_full_mode_audits_the_run_data_with_embeddings(leaky, tmp_path, monkeypatch):
    from cnnlab.audit import embed

    emb = RandomFeatures()
    monkeypatch.setattr(embed, "ModelEmbedder", lambda: emb)
    audited = audit_for_run(bundle_of(leaky, tmp_path), "full", cache_dir=tmp_path / "c",
                            log=lambda s: None)  # fmt: skip
    assert audited.report.checks["label_issue"].value == "ran" and emb.calls > 0
    assert audited.report.checks["image_properties"].value == "ran"
    audited.write(tmp_path / "run")
    assert (tmp_path / "run" / "audit.json").is_file()


def test_full_mode_without_weights_names_the_training_fix(clean, tmp_path, monkeypatch):
    from cnnlab.models import efficientnet_lite

    monkeypatch.setattr(efficientnet_lite, "weights_path", lambda lite: None)
    with pytest.raises(ConfigError, match="train with --audit fast"):
        audit_for_run(bundle_of(clean, tmp_path), "full", log=lambda s: None)


def test_off_and_builtin_data_are_not_audited():
    class Bundle:  # Fashion-MNIST and a user's datasets: no files
        folder = None

    assert audit_for_run(Bundle(), "fast") is None
    assert audit_for_run(object(), "full") is None


def finding(code, severity, files, splits, kind="exact", fix="rm x"):
    return Finding(code, severity, "t", files, splits, {"kind": kind}, fix)


def test_warning_lines_count_per_code_and_leave_info_out():
    fs = [
        finding(Code.CROSS_SPLIT_DUPLICATE, Severity.ERROR, ("v/a", "t/a"), ("val", "train")),
        finding(
            Code.CROSS_SPLIT_DUPLICATE,
            Severity.ERROR,
            ("s/b", "t/b", "t/c"),
            ("test", "train", "train"),
            kind="near",
        ),  # fmt: skip
        finding(Code.NEAR_DUPLICATE, Severity.INFO, ("t/d", "t/e"), ("train", "train"), "near"),
        finding(Code.DARK, Severity.WARNING, ("t/f",), ("train",), fix="look at it"),
    ]
    lines = warning_lines(AuditReport(fs, {}, {}))
    assert len(lines) == 2  # the near duplicate inside one split is information only
    assert lines[0].startswith("warning: audit: 2 images appear in more than one split (1 exact,"
                               " 1 near; 5 files in test, train, val)")  # fmt: skip
    assert "delete the 3 extra copies" in lines[0]
    assert lines[1] == "warning: audit: dark: t; fix: look at it"
    assert warning_lines(AuditReport(fs[2:3], {}, {})) == []
