import json

import numpy as np
import pytest
from audittree import RandomFeatures, inject, make_tree

from cnnlab.audit import Check, Code, Severity, audit
from cnnlab.errors import ConfigError

QUIET = {"log": lambda s: None}
COPIES = ("copy_exact", "copy_png", "copy_jpeg", "copy_small", "copy_crop", "copy_flip")


@pytest.fixture
def tree(tmp_path):
    root = make_tree(tmp_path / "data")
    return root, inject(root)


def pairs_of(report, code):
    return {frozenset(f.files) for f in report.by_code(code)}


def test_fast_audit_finds_every_injected_copy_and_nothing_else(tree, cache_dir):
    root, truth = tree
    r = audit(root, mode="fast", cache_dir=cache_dir, **QUIET)
    assert pairs_of(r, Code.CROSS_SPLIT_DUPLICATE) == {frozenset(truth[k]) for k in COPIES}
    kinds = {f.files[0]: f.evidence["kind"] for f in r.by_code(Code.CROSS_SPLIT_DUPLICATE)}
    assert kinds["val/red/copy_exact.jpg"] == kinds["val/blue/copy_png.png"] == "exact"
    assert kinds["val/red/copy_jpeg.jpg"] == kinds["val/blue/copy_flip.jpg"] == "near"
    assert pairs_of(r, Code.EXACT_DUPLICATE) == {frozenset(truth["dup_same_split"])}
    assert pairs_of(r, Code.PLACEHOLDER) == {frozenset(truth["placeholder"])}
    assert {f.code for f in r.findings} == {
        Code.CROSS_SPLIT_DUPLICATE,
        Code.EXACT_DUPLICATE,
        Code.PLACEHOLDER,
    }
    assert r.findings[0].severity is Severity.ERROR
    assert r.checks["label_issue"] is Check.SKIPPED
    flip = next(f for f in r.findings if f.files[0] == "val/blue/copy_flip.jpg")
    assert flip.evidence["pairs"][0]["match"] == "mirrored"
    assert flip.splits == ("val", "train")
    assert flip.fix.endswith(f"rm {root}/train/blue/blue_02.jpg")


def test_full_audit_finds_each_injected_problem(tree, cache_dir, tmp_path):
    root, truth = tree
    emb = RandomFeatures()
    out = tmp_path / "out"
    r = audit(root, embedder=emb, cache_dir=cache_dir, out_dir=out, **QUIET)
    (issue,) = r.by_code(Code.LABEL_ISSUE)
    assert issue.files == truth["flipped_label"]
    assert issue.evidence["given_label"] == "blue" and issue.evidence["suggested_label"] == "red"
    assert issue.evidence["rank"] <= 3  # behind the two placeholder cards at most
    assert r.label_ranking.index(issue.files[0]) + 1 == issue.evidence["rank"]
    assert len(set(r.label_ranking)) == sum(r.data["images"].values())
    assert f"mv {root}/train/blue/flipped_label.jpg {root}/train/red/" in issue.fix
    files = {c: set(r.by_code(c)[0].files) for c in (Code.DARK, Code.BLURRY, Code.TINY)}
    assert files[Code.DARK] == set(truth["dark"])
    assert set(truth["blurry"]) <= files[Code.BLURRY]
    assert files[Code.TINY] == set(truth["tiny"])
    assert set(truth["flat"]) <= set(r.by_code(Code.LOW_INFORMATION)[0].files)
    assert r.by_code(Code.CORRUPT_FILE)[0].files == truth["truncated"]
    assert pairs_of(r, Code.CROSS_SPLIT_DUPLICATE) == {frozenset(truth[k]) for k in COPIES}
    assert all(v is Check.RAN for k, v in r.checks.items() if k != "near_duplicate_embedding")
    # the placeholder is reported once, not again as a label issue or outlier
    flagged = {f.files[0] for f in r.findings if f.code in (Code.LABEL_ISSUE, Code.OUTLIER)}
    assert not flagged & set(truth["placeholder"])
    # audit.json is the report; the contact sheet is a PNG
    on_disk = json.loads((out / "audit.json").read_text())
    assert on_disk == json.loads(json.dumps(r.to_dict()))
    assert [f["severity"] for f in on_disk["findings"]][0] == "error"
    assert (out / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.sheet == str(out / "audit.png")
    # a second audit embeds nothing and reads the probe from the cache
    calls = emb.calls
    again = audit(root, embedder=emb, cache_dir=cache_dir, **QUIET)
    assert emb.calls == calls
    n = sum(again.data["images"].values())
    assert f"embeddings: {emb.key}, {n} of {n} from the cache" in again.notes
    assert again.to_dict()["findings"] == r.to_dict()["findings"]


def test_audit_follows_a_runs_split_manifest(tmp_path, cache_dir):
    from audittree import photo, save

    from cnnlab.data.folder import build_folder_data
    from cnnlab.models.spec import PreprocessSpec

    root = tmp_path / "d"
    for cls in ("a", "b"):
        for k in range(8):
            save(root / cls / f"{k}.png", photo(k + (30 if cls == "b" else 0)))
    spec = PreprocessSpec(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    run = build_folder_data(root, image_size=32, in_chans=3, preprocess=spec, seed=5,
                            val_fraction=0.25, cache_dir=cache_dir, log=lambda s: None)  # fmt: skip
    run.write_artifacts(tmp_path / "run")
    r = audit(root, mode="fast", manifest=tmp_path / "run" / "split_manifest.csv",
              cache_dir=cache_dir, **QUIET)  # fmt: skip
    assert r.data["images"] == {"train": 12, "val": 4}
    # same split without the manifest, from the same options
    r2 = audit(root, mode="fast", seed=5, val_fraction=0.25, cache_dir=cache_dir, **QUIET)
    assert r2.data["images"] == r.data["images"]


def test_fashion_mnist_audit_finds_the_copy_in_test(fake_fmnist, cache_dir):
    images, labels = fake_fmnist
    r = audit(None, mode="fast", cache_dir=cache_dir, **QUIET)
    (f,) = r.by_code(Code.CROSS_SPLIT_DUPLICATE)
    assert f.files == ("t10k-images#5", "train-images#12") and f.splits == ("test", "train")
    assert f.evidence["kind"] == "exact" and "built-in" in f.fix
    assert r.data["layout"] == "idx" and r.data["images"]["test"] == len(labels["test"])
    assert len(r.findings) == 1


def test_bad_mode_and_missing_weights_are_errors_naming_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown audit mode 'quick'"):
        audit(tmp_path, mode="quick")
    from cnnlab.models import efficientnet_lite

    monkeypatch.setattr(efficientnet_lite, "weights_path", lambda lite: None)
    with pytest.raises(ConfigError, match="--no-embeddings"):
        audit(tmp_path)


def test_an_empty_folder_is_a_data_error(tmp_path):
    from cnnlab.errors import DataError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        audit(tmp_path / "empty", mode="fast", **QUIET)


def test_probe_of_real_numbers_is_deterministic(tree, cache_dir):
    root, _ = tree
    a = audit(root, embedder=RandomFeatures(), cache_dir=cache_dir / "1", **QUIET)
    b = audit(root, embedder=RandomFeatures(), cache_dir=cache_dir / "2", **QUIET)
    ea = [f.evidence for f in a.by_code(Code.LABEL_ISSUE)]
    assert ea == [f.evidence for f in b.by_code(Code.LABEL_ISSUE)]
    assert np.isfinite([e["self_confidence"] for e in ea]).all()
