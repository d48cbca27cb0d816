"""`cnnlab audit DATA` and `cnnlab.audit(...)`: the CLI and API surface of the audit."""

import json
import shutil

import pytest
from audittree import make_tree

from cnnlab.cli import main
from cnnlab.errors import EXIT_USAGE


@pytest.fixture
def leaky(tmp_path):
    """A clean split_dirs tree plus one training image copied, byte for byte, into val."""
    root = make_tree(tmp_path / "data", per_class=6, val_per_class=2)
    shutil.copyfile(root / "train/red/red_03.jpg", root / "val/red/leak.jpg")
    return root


def test_json_is_audit_json_and_names_the_cross_split_copy(leaky, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["audit", str(leaky), "--json", "--no-embeddings", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed)  # the whole of stdout is one JSON object
    assert printed == (out / "audit.json").read_text()
    first = report["findings"][0]
    assert first["code"] == "cross_split_duplicate" and first["severity"] == "error"
    # the held-out copy is kept and listed first; paths are relative to the data root
    assert first["files"] == ["val/red/leak.jpg", "train/red/red_03.jpg"]
    assert first["splits"] == ["val", "train"]
    assert first["evidence"]["kind"] == "exact"
    assert first["fix"].endswith(f"rm {leaky}/train/red/red_03.jpg")
    assert report["data"]["images"] == {"train": 12, "val": 5}
    assert report["checks"]["label_issue"] == "skipped"  # --no-embeddings
    assert report["counts"] == {"cross_split_duplicate": 1}
    assert report["sheet"] == str(out / "audit.png") and (out / "audit.png").is_file()


def test_text_output_and_the_default_output_folder(leaky, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["audit", str(leaky), "--mode", "fast"]) == 0
    text = capsys.readouterr().out
    assert "error    cross_split_duplicate" in text and "val/red/leak.jpg" in text
    saved = json.loads((tmp_path / "audit-data" / "audit.json").read_text())
    assert saved["checks"]["image_properties"] == "skipped"  # fast: duplicates only


def test_the_split_audited_is_the_one_train_makes(tmp_path, capsys):
    # class-per-folder data: the split comes from the fraction and the seed, as in training
    root = make_tree(tmp_path / "split", per_class=10, val_per_class=0)
    for cls in ("red", "blue"):
        shutil.copytree(root / "train" / cls, tmp_path / "flat" / cls)
    assert main(["audit", str(tmp_path / "flat"), "--json", "--mode", "fast",
                 "--val-fraction", "0.3", "--seed", "4", "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)["data"]
    assert data["images"] == {"train": 14, "val": 6} and data["seed"] == 4


def test_an_output_folder_inside_the_data_is_refused(leaky, capsys):
    code = main(["audit", str(leaky), "--mode", "fast", "--out", str(leaky / "report")])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "inside the data folder" in err and "--out" in err
    assert not (leaky / "report").exists()


def test_cnnlab_audit_stays_callable_after_the_package_is_imported(leaky):
    import cnnlab.audit.core  # noqa: F401  (binds the package to the name cnnlab.audit)

    first = cnnlab.audit(leaky, mode="fast", log=lambda s: None)
    again = cnnlab.audit(leaky, mode="fast", log=lambda s: None)
    assert [f.code.value for f in first.findings] == ["cross_split_duplicate"]
    assert again.to_dict() == first.to_dict()
    assert cnnlab.audit.Code.CROSS_SPLIT_DUPLICATE.value == "cross_split_duplicate"
