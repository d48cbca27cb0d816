from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from imagetree import BAD_FILES, add_bad_files, write_image
from torch.utils.data import DataLoader

from cnnlab.data import imaging
from cnnlab.data.folder import build_folder_data
from cnnlab.data.transforms import load_for_predict
from cnnlab.errors import ConfigError, DataChangedError, DataError
from cnnlab.models.spec import PreprocessSpec

SPEC = PreprocessSpec((3, 16, 16), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), crop_pct=0.875)


def build(path, cache_dir, **kw):
    opts = {"image_size": 16, "in_chans": 3, "preprocess": SPEC, "cache_dir": cache_dir}
    return build_folder_data(path, **(opts | kw), log=lambda s: None)


def labels_agree(data) -> None:
    """Every item's class index names the folder it came from, in every split."""
    for ds in (data.train, data.val, data.test):
        if ds is not None:
            for path, t in zip(ds.paths, ds.targets, strict=True):
                assert data.classes[t] == Path(path).parent.name


def test_class_folders_with_every_bad_input(make_tree, cache_dir, tmp_path):
    root = make_tree({"cat": 10, "dog": 6})
    add_bad_files(root)
    data = build(root, cache_dir, val_fraction=0.2, test_fraction=0.1)
    got = {Path(s.path).relative_to(root).as_posix(): s.reason for s in data.skipped}
    assert got == BAD_FILES
    assert data.layout == "class_folders" and data.classes == ["cat", "dog"]
    assert data.class_counts == {"train": [7, 4], "val": [2, 1], "test": [1, 1]}
    assert (len(data.train), len(data.val), len(data.test)) == (11, 3, 2)
    labels_agree(data)
    lines = data.summary_lines()
    assert "layout class_folders" in lines[0] and "val 20%" in lines[0]
    assert f"skipped {len(BAD_FILES)} files (all listed in skipped.csv):" in lines
    for reason, n in Counter(BAD_FILES.values()).items():  # one line per reason
        assert sum(line.split()[:2] == [reason, str(n)] for line in lines) == 1

    data.write_artifacts(tmp_path / "run")
    with open(tmp_path / "run" / "skipped.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {Path(r["path"]).relative_to(root).as_posix(): r["reason"] for r in rows} == BAD_FILES
    with open(tmp_path / "run" / "split_manifest.csv") as fh:
        manifest = list(csv.DictReader(fh))
    assert Counter(r["split"] for r in manifest) == {"train": 11, "val": 3, "test": 2}
    counts = json.loads((tmp_path / "run" / "class_counts.json").read_text())
    assert counts["counts"]["train"] == [7, 4] and counts["classes"] == ["cat", "dog"]


def test_split_dirs_class_indices_agree_when_a_class_is_missing(make_tree, cache_dir):
    root = make_tree({"train/a": 3, "train/b": 3, "train/c": 2, "valid/a": 2, "valid/c": 1})
    make_tree({"test/b": 2}, root=root)
    data = build(root, cache_dir)
    assert data.layout == "split_dirs" and data.classes == ["a", "b", "c"]
    assert data.class_counts == {"train": [3, 3, 2], "val": [2, 0, 1], "test": [0, 2, 0]}
    assert data.val.targets == [0, 0, 2]
    labels_agree(data)
    notes = "\n".join(data.summary_lines())
    assert "1 classes have no val images: 'b'" in notes
    assert "2 classes have no test images: 'a', 'c'" in notes


def test_split_dirs_without_val_carve_it_from_train(make_tree, cache_dir):
    data = build(make_tree({"train/a": 10, "train/b": 10}), cache_dir, val_fraction=0.2)
    assert data.class_counts == {"train": [8, 8], "val": [2, 2]}
    assert data.test is None and "carved from train" in data.summary_lines()[0]
    labels_agree(data)


def test_csv_layout(tmp_path, cache_dir):
    root = tmp_path / "d"
    lines = ["path,label"]
    for i in range(12):
        label = "cat" if i % 3 else "dog"
        write_image(root / "imgs" / f"{i}.png", seed=i)
        lines.append(f"imgs/{i}.png,{label}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    data = build(root / "labels.csv", cache_dir, val_fraction=0.25)
    assert data.layout == "csv" and data.classes == ["cat", "dog"]
    assert data.class_counts == {"train": [6, 3], "val": [2, 1]}


def test_on_bad_image_fail_lists_the_bad_files(make_tree, cache_dir):
    root = make_tree({"cat": 3, "dog": 3})
    add_bad_files(root)
    with pytest.raises(DataError) as info:
        build(root, cache_dir, on_bad_image="fail")
    msg = str(info.value)
    n_bad = sum(r in imaging.BAD_IMAGE_REASONS for r in BAD_FILES.values())
    assert msg.startswith(f"{n_bad} unusable image files in {root} (")
    assert "truncated 2" in msg and "bomb.png (bomb)" in msg and "on_bad_image=skip" in msg
    clean = make_tree({"cat": 2, "dog": 2}, root=root.parent / "clean")
    data = build(clean, cache_dir, on_bad_image="fail", val_fraction=0.0)
    assert len(data.train) == 4 and data.skipped == []


def test_empty_class_folder_is_an_error_naming_it(make_tree, cache_dir):
    root = make_tree({"cat": 3, "dog": 3, "emu": 0})
    with pytest.raises(DataError, match=r"no training images for class 'emu' in .*emu \(no image"):
        build(root, cache_dir)


def test_class_left_empty_after_skipping_names_the_reasons(make_tree, cache_dir):
    root = make_tree({"cat": 3, "dog": 0})
    (root / "dog" / "a.jpg").write_bytes(b"")
    (root / "dog" / "b.jpg").write_text("text")
    (root / "dog" / ".DS_Store").write_text("x")
    msg = r"class 'dog' .*dog \(3 skipped: .*empty_file 1.*unidentified 1.*; add images"
    with pytest.raises(DataError, match=msg):
        build(root, cache_dir)


def test_class_only_in_val_is_an_error(make_tree, cache_dir):
    root = make_tree({"train/a": 3, "val/a": 1, "val/b": 1})
    with pytest.raises(
        DataError, match=r"no training images for class 'b' in .*train \(no folder b/"
    ):
        build(root, cache_dir)


def test_empty_split_is_an_error_naming_it(make_tree, cache_dir, tmp_path):
    root = make_tree({"train/a": 3, "val/a": 0})
    (root / "val" / "a" / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"the val split is empty: .*val has no usable images"):
        build(root, cache_dir)
    one_each = make_tree({"a": 1, "b": 1}, root=tmp_path / "tiny")
    with pytest.raises(DataError, match="the val split is empty: no usable val images"):
        build(one_each, cache_dir, val_fraction=0.1)
    assert build(one_each, cache_dir, val_fraction=0.0).val is None


def test_manifest_reuses_exactly_the_same_split(make_tree, cache_dir, tmp_path):
    root = make_tree({"cat": 8, "dog": 8})
    first = build(root, cache_dir, val_fraction=0.25, seed=3)
    first.write_artifacts(tmp_path / "run")
    manifest = tmp_path / "run" / "split_manifest.csv"
    write_image(root / "cat" / "new.png", seed=50)  # added
    write_image(root / "dog" / "img000.png", size=(30, 30), seed=51)  # modified
    again = build(root, cache_dir, val_fraction=0.5, seed=9, manifest=manifest)
    assert again.val.paths == first.val.paths and again.train.paths == first.train.paths
    notes = "\n".join(again.summary_lines())
    assert "1 added" in notes and "1 modified" in notes

    (root / "cat" / "img001.png").unlink()
    with pytest.raises(
        DataChangedError, match=r"1 files of the split manifest .* are missing .*img001"
    ):
        build(root, cache_dir, manifest=manifest)
    lenient = build(root, cache_dir, manifest=manifest, allow_changed=True)
    assert [s.reason for s in lenient.skipped] == ["missing"]
    assert len(lenient.train) + len(lenient.val) == 15 and lenient.classes == ["cat", "dog"]


def test_second_build_of_an_unchanged_folder_decodes_nothing(make_tree, cache_dir, monkeypatch):
    root = make_tree({"cat": 4, "dog": 4})
    first = build(root, cache_dir, cache="disk")
    monkeypatch.setattr(imaging, "decode", lambda *a: pytest.fail("decoded again"))
    again = build(root, cache_dir, cache="auto")
    assert torch.equal(again.val[0][0], first.val[0][0])
    assert "pixel cache: disk" in "\n".join(again.summary_lines())


def test_cache_modes_give_identical_samples_and_predict_agrees(make_tree, cache_dir):
    root = make_tree({"cat": 5, "dog": 5}, ext=".jpg")
    runs = {
        m: build(root, cache_dir / m, cache=m, val_fraction=0.4) for m in ("memory", "disk", "off")
    }
    for i in range(len(runs["off"].val)):
        x = runs["off"].val[i][0]
        assert torch.equal(runs["memory"].val[i][0], x) and torch.equal(runs["disk"].val[i][0], x)
        # predict on the file applies exactly the evaluation preprocessing of the cached sample
        assert torch.equal(load_for_predict(runs["off"].val.paths[i], SPEC)[0], x)
    assert torch.equal(runs["memory"].train[3][0], runs["disk"].train[3][0])


def test_augmentation_does_not_depend_on_the_worker_count(make_tree, cache_dir):
    root = make_tree({"cat": 6, "dog": 6})
    batches = {}
    for workers in (0, 2):
        data = build(root, cache_dir, augment="strong", workers=workers, val_fraction=0.0)
        loader = DataLoader(
            data.train,
            batch_size=4,
            num_workers=workers,
            persistent_workers=workers > 0,  # set_epoch must reach workers that stay alive
        )
        for epoch in (0, 1):
            data.train.set_epoch(epoch)
            batches[workers, epoch] = [x for x, _ in loader]
    for epoch in (0, 1):
        pairs = zip(batches[0, epoch], batches[2, epoch], strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(batches[2, 0][0], batches[2, 1][0])


def test_normalisation_from_weights_or_measured_and_grayscale(make_tree, cache_dir):
    root = make_tree({"cat": 4, "dog": 4})
    assert build(root, cache_dir).preprocess.mean == SPEC.mean
    scratch = build(root, cache_dir / "s", preprocess=None)
    assert scratch.preprocess.mean != (0.5, 0.5, 0.5) and scratch.preprocess.crop_pct == 1.0
    assert "measured on the training split" in "\n".join(scratch.summary_lines())
    gray = build(root, cache_dir / "g", in_chans=1)
    assert gray.preprocess.input_size == (1, 16, 16)
    assert gray.preprocess.mean == pytest.approx((sum(SPEC.mean) / 3,))
    assert gray.train[0][0].shape == (1, 16, 16) and gray.val[0][0].shape == (1, 16, 16)


def test_class_weights_and_balanced_sampler(make_tree, cache_dir):
    data = build(make_tree({"a": 12, "b": 4}), cache_dir, val_fraction=0.0)
    assert data.class_weights() == pytest.approx([16 / (2 * 12), 16 / (2 * 4)])
    sampler = data.balanced_sampler(seed=1)
    first = list(sampler)
    assert list(data.balanced_sampler(seed=1)) == first and len(first) == 16
    sampler.set_epoch(1)
    assert list(sampler) != first
    draws = Counter(data.train.targets[i] for _ in range(50) for i in sampler)
    assert abs(draws[0] - draws[1]) / (draws[0] + draws[1]) < 0.1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"augment": "heavy"}, "augmentation preset 'heavy'"),
        ({"cache": "ram"}, "cache mode 'ram'"),
        ({"on_bad_image": "ignore"}, "on_bad_image policy"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "sum below 1"),
        ({"in_chans": 4}, "in_chans must be 1 or 3"),
    ],
)
def test_bad_options_are_config_errors(make_tree, cache_dir, kw, match):
    with pytest.raises(ConfigError, match=match):
        build(make_tree({"a": 2}), cache_dir, **kw)


def test_user_files_are_never_modified(make_tree, cache_dir):
    root = make_tree({"cat": 3, "dog": 3})
    add_bad_files(root)
    before = {p: (p.lstat().st_mtime_ns, p.lstat().st_size) for p in root.rglob("*")}
    build(root, cache_dir, cache="disk")
    after = {p: (p.lstat().st_mtime_ns, p.lstat().st_size) for p in root.rglob("*")}
    assert after == before and not any(n.startswith(".") for n in os.listdir(root))


def test_uint8_output_plus_batch_transform_equals_float_output(make_tree, cache_dir):
    root = make_tree({"cat": 5, "dog": 5})
    f = build(root, cache_dir, val_fraction=0.4)
    u = build(root, cache_dir, val_fraction=0.4, output="uint8")
    assert isinstance(f.batch_transform(), torch.nn.Identity)
    for split in ("train", "val"):
        a, b = getattr(f, split), getattr(u, split)
        a.set_epoch(2), b.set_epoch(2)
        xf = next(iter(DataLoader(a, batch_size=6)))[0]
        xu = next(iter(DataLoader(b, batch_size=6)))[0]
        assert xu.dtype == torch.uint8 and xu.shape == xf.shape
        assert torch.equal(u.batch_transform()(xu), xf)
    with pytest.raises(ConfigError, match="unknown output 'half'"):
        build(root, cache_dir, output="half")


def test_a_single_class_is_an_error_not_a_perfect_score(make_tree, cache_dir):
    root = make_tree({"ants": 6})
    with pytest.raises(DataError, match="only one class \\('ants'\\).*at least two"):
        build(root, cache_dir)


def test_labels_that_differ_only_in_case_are_flagged(make_tree, cache_dir):
    root = make_tree({"ants": 4, "ANTS": 4, "bees": 4})
    data = build(root, cache_dir)
    assert data.classes == ["ANTS", "ants", "bees"]  # still separate: the user decides
    warnings = [line for line in data.summary_lines() if "differ only in case" in line]
    assert len(warnings) == 1 and "'ANTS' and 'ants'" in warnings[0]
