"""report.html from a real tiny run: self-contained, the run's numbers, a bounded gallery,
everything escaped, and a page even for runs that went wrong."""

import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
import yaml

from cnnlab.report import write_report


class _Page(HTMLParser):
    """Tags with their attributes, and the text of every table cell, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[tuple[str, str]] = []  # (table class, cell text)
        self._table: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._table.append(a.get("class") or "")
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table.pop()
        elif tag in ("td", "th") and self._cell is not None:
            self.cells.append((self._table[-1], "".join(self._cell).strip()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _test_json(run):
    return json.loads((run / "test.json").read_text())


def test_the_report_is_one_self_contained_file(report):
    text = report.read_text(encoding="utf-8")
    page = _Page(text)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for tag, attrs in page.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), (tag, value[:40])
    assert not re.search(r"url\(|@import|https?://", text.split("<body>")[0])  # CSS: nothing
    ids = [a["id"] for t, a in page.tags if t == "section"]
    expected = ["status", "data", "model", "config", "curves", "metrics", "confused", "mistakes"]
    # every run ends with the doctor, so doctor.json's findings (or "no problem") have a section
    assert ids == [*expected, "findings", "environment"]


def test_the_numbers_are_the_runs(report, trained_run):
    test = _test_json(trained_run)
    text = report.read_text(encoding="utf-8")
    page = _Page(text)
    headline = next(a for t, a in page.tags if a.get("id") == "headline-accuracy")
    assert float(headline["data-value"]) == test["accuracy"]
    assert f">{100 * test['accuracy']:.2f}%</strong>" in text
    cm = np.array(test["confusion_matrix"])
    cells = [int(v) for k, v in page.cells if k == "cm" and v.isdigit()]
    assert cells == cm.ravel().tolist()
    classes = json.loads((trained_run / "classes.json").read_text())
    counts = json.loads((trained_run / "class_counts.json").read_text())["counts"]
    plain = [v for k, v in page.cells if k == ""]
    for c in classes:  # per-class rows: "class, precision, recall, F1, support"
        r = test["per_class"][c]
        row = [
            c,
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
            f"{r['f1']:.3f}",
            str(r["support"]),
        ]
        assert any(plain[i : i + 5] == row for i in range(len(plain))), c
    total = ["total", *(f"{sum(counts[s]):,}" for s in ("train", "val", "test"))]
    assert any(plain[i : i + 4] == total for i in range(len(plain)))
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert f"subset: {cfg['data']['subset']}" in text  # the resolved config, verbatim
    assert f"{json.loads((trained_run / 'run.json').read_text())['params']:,}" in text


def test_the_gallery_is_the_most_confident_mistakes_and_is_bounded(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cm = np.array(_test_json(run)["confusion_matrix"])
    wrong = int(cm.sum() - np.trace(cm))  # from test.json, independently of the report
    text = write_report(run, mistakes=5).read_text(encoding="utf-8")
    figures = re.findall(r'<figure class="mistake">(.*?)</figure>', text, re.S)
    assert len(figures) == min(5, wrong)
    probs = [float(p) for p in re.findall(r"</b> ([\d.]+)% · true", text)]
    assert len(probs) == len(figures) and probs == sorted(probs, reverse=True)
    for fig in figures:
        pred, true = re.findall(r"<b>(.*?)</b>", fig)
        assert pred != true
        assert fig.count("<img ") == 2
    assert f"most confident of the {wrong:,} wrong predictions" in text


def test_everything_from_the_run_folder_is_escaped(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    evil = "<script>alert(1)</script>"
    status = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(status | {"stop_reason": evil}))
    (run / "skipped.csv").write_text(
        f'path,reason,detail\n"<img src=x onerror=alert(2)>",{evil},"a&b"\n'
    )
    env = json.loads((run / "environment.json").read_text())
    (run / "environment.json").write_text(json.dumps(env | {"gpu": "</section><h1>x"}))
    text = write_report(run).read_text(encoding="utf-8")
    assert "<script" not in text and "<img src=x" not in text and "</section><h1>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text and "a&amp;b" in text


def test_doctor_and_audit_findings_are_shown_from_their_shape(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    doctor = {
        "findings": [
            {
                "code": "lr_too_high", "severity": "error", "title": "loss rose 3x in epoch 1",
                "evidence": {"loss_ratio": 3.1, "threshold": 2.0}, "fix": "--lr 0.003",
                "confidence": 0.9,
                "symptoms": [{"code": "one_class", "severity": "warning", "title": "predicts <one> class",
                              "evidence": {}, "fix": ""}],
            }
        ],
        "version": 1,
    }  # fmt: skip
    audit = {"findings": [{"code": "cross_split_duplicate", "severity": "warning",
                           "title": "2 images in train and test", "evidence": "sha256 equal",
                           "fix": "remove them", "files": ["a.png", "b.png"], "splits": ["train", "test"]}]}  # fmt: skip
    (run / "doctor.json").write_text(json.dumps(doctor))
    (run / "audit.json").write_text(json.dumps(audit))
    text = write_report(run).read_text(encoding="utf-8")
    findings = text.split('<section id="findings">')[1].split("</section>")[0]
    for s in ("lr_too_high", "loss rose 3x in epoch 1", "--lr 0.003", "loss_ratio", "3.1",
              "one_class", "predicts &lt;one&gt; class", "cross_split_duplicate", "a.png, b.png",
              "sha256 equal", "remove them"):  # fmt: skip
        assert s in findings, s
    assert findings.count('class="finding sev-error"') == 1
    assert findings.count('class="finding sev-warning"') == 2


def test_a_run_that_failed_early_still_gets_a_page(tmp_path):
    run = tmp_path / "broken"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps({"status": "failed", "error": "DataError: <no images>"})
    )
    (run / "config.yaml").write_text("model: {name: smallcnn}\n")
    (run / "environment.json").write_text("{not json")
    text = write_report(run).read_text(encoding="utf-8")
    assert 'class="badge st-failed">failed</span> DataError: &lt;no images&gt;' in text
    assert "not evaluated yet" in text and "environment.json is damaged" in text
    assert '<section id="mistakes">' not in text


def test_the_gallery_says_why_when_the_data_is_gone(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"].update(dataset="folder", path=str(tmp_path / "gone"))
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    text = write_report(run).read_text(encoding="utf-8")
    assert "The gallery needs the test images, which cannot be loaded here" in text
    assert '<figure class="mistake">' not in text
    assert f"{_test_json(run)['accuracy'] * 100:.2f}%" in text  # the rest of the page is there


def test_a_flip_tta_evaluation_is_named_and_raises_no_data_changed_note(trained_run, tmp_path):
    from cnnlab import api

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    report = api.evaluate(run, tta="flip", log=lambda s: None)
    assert report["tta"] == "flip"
    text = write_report(run).read_text(encoding="utf-8")
    assert "each averaged with its mirror image (--tta flip)" in text  # the headline
    assert "test.json was evaluated with --tta flip; these are single views" in text
    assert "the data may have changed" not in text
    summary = (run / "summary.md").read_text()
    assert "each averaged with its mirror image (--tta flip)" in summary
    api.evaluate(run, log=lambda s: None)  # one view again: no mention left
    assert "--tta" not in write_report(run).read_text(encoding="utf-8")
    assert "--tta" not in (run / "summary.md").read_text()


def test_unknown_method_is_an_error(trained_run):
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="gradcam"):
        write_report(trained_run, method="scorecam")
