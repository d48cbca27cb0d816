from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from imagetree import write_image

from cnnlab.data import split
from cnnlab.data.split import ManifestRow
from cnnlab.errors import DataError, RunError


def test_detect_layout(make_tree, tmp_path):
    assert split.detect_layout(make_tree({"cat": 1, "dog": 1})) == "class_folders"
    two = make_tree({"train/cat": 1, "valid/cat": 1}, root=tmp_path / "two")
    assert split.detect_layout(two) == "split_dirs"
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\n")
    assert split.detect_layout(csv) == "csv"
    with pytest.raises(DataError, match="does not exist"):
        split.detect_layout(tmp_path / "nope")
    with pytest.raises(DataError, match="no train/"):
        split.detect_layout(make_tree({"val/cat": 1}, root=tmp_path / "noval"))
    with pytest.raises(DataError, match="is a file"):
        split.detect_layout(write_image(tmp_path / "x.png"))


def test_discover_class_folders(make_tree):
    root = make_tree({"cat": 2, "dog": 1, "empty": 0})
    write_image(root / "loose.jpg")
    (root / "README.md").write_text("hi")
    (root / ".DS_Store").write_bytes(b"x")
    d = split.discover(root)
    assert d.layout == "class_folders" and d.classes == ["cat", "dog", "empty"]
    assert [(c.rel, c.label, c.split) for c in d.cands] == [
        ("cat/img000.png", "cat", None),
        ("cat/img001.png", "cat", None),
        ("dog/img000.png", "dog", None),
    ]
    assert {Path(s.path).name: s.reason for s in d.skipped} == {
        ".DS_Store": "hidden",
        "README.md": "not_image",
        "loose.jpg": "outside_layout",
    }


def test_discover_split_dirs(make_tree):
    root = make_tree({"train/cat": 2, "train/dog": 2, "validation/cat": 1, "test/dog": 1})
    (root / "extra").mkdir()
    write_image(root / "train" / "stray.png")
    d = split.discover(root)
    assert d.layout == "split_dirs" and d.classes == ["cat", "dog"]
    assert sorted(d.split_dirs) == ["test", "train", "val"]
    assert Counter(c.split for c in d.cands) == {"train": 4, "val": 1, "test": 1}
    assert {Path(s.path).name: s.reason for s in d.skipped} == {
        "extra": "outside_layout",
        "stray.png": "outside_layout",
    }


def test_two_validation_folders_are_ambiguous(make_tree):
    root = make_tree({"train/cat": 1, "val/cat": 1, "valid/cat": 1})
    with pytest.raises(DataError, match="keep one validation folder"):
        split.discover(root)


def test_discover_csv(tmp_path):
    root = tmp_path / "d"
    write_image(root / "imgs" / "a.png")
    write_image(root / "imgs" / "b.png", seed=1)
    outside = write_image(tmp_path / "elsewhere" / "c.png")
    (root / "imgs" / "n.txt").write_text("x")
    csv = root / "labels.csv"
    csv.write_text(
        "path,label,split\n"
        "imgs/a.png,cat,train\n"
        f"{outside},dog,train\n"
        "imgs/b.png,dog,valid\n"
        "imgs/a.png,cat,train\n"
        "imgs/gone.png,cat,train\n"
        "imgs/n.txt,cat,train\n"
        "\n"
    )
    d = split.discover(csv)
    assert d.layout == "csv" and d.root == root and d.classes == ["cat", "dog"]
    assert [(c.rel, c.label, c.split) for c in d.cands] == [
        ("imgs/a.png", "cat", "train"),
        (str(outside), "dog", "train"),
        ("imgs/b.png", "dog", "val"),
    ]
    assert d.cands[0].path == root / "imgs" / "a.png"
    assert {Path(s.path).name: s.reason for s in d.skipped} == {
        "a.png": "duplicate",
        "gone.png": "missing",
        "n.txt": "not_image",
    }


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("file,class\na.png,cat\n", "needs a header row"),
        ("path,label\na.png,\n", "line 2: empty path or label"),
        ("path,label,split\na.png,cat,holdout\n", "split 'holdout'"),
    ],
)
def test_bad_csv_is_a_clear_error(tmp_path, text, match):
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        split.discover(tmp_path / "l.csv")


@pytest.mark.parametrize(
    ("n", "val", "test", "expected"),
    [
        (100, 0.1, 0.0, (90, 10, 0)),
        (100, 0.1, 0.2, (70, 10, 20)),
        (10, 0.25, 0.0, (7, 3, 0)),  # 2.5 rounds half up
        (5, 0.1, 0.0, (4, 1, 0)),  # a positive fraction gives at least one image
        (2, 0.1, 0.1, (1, 1, 0)),  # training keeps one; the test split gives way first
        (1, 0.5, 0.0, (1, 0, 0)),
        (0, 0.1, 0.1, (0, 0, 0)),
        (3, 0.0, 0.0, (3, 0, 0)),
    ],
)
def test_split_counts(n, val, test, expected):
    assert split.split_counts(n, val, test) == expected


def items(n_per_class: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{c}/{i:03d}.jpg", c) for c, n in n_per_class.items() for i in range(n)]


def test_assign_splits_is_stratified_and_deterministic():
    its = items({"a": 50, "b": 20, "c": 3})
    s = split.assign_splits(its, 0.2, 0.1, seed=7)
    per = Counter(zip((label for _, label in its), s, strict=True))
    assert (per["a", "val"], per["a", "test"], per["a", "train"]) == (10, 5, 35)
    assert (per["b", "val"], per["b", "test"], per["b", "train"]) == (4, 2, 14)
    assert (per["c", "val"], per["c", "test"], per["c", "train"]) == (1, 1, 1)
    assert split.assign_splits(its, 0.2, 0.1, seed=7) == s
    assert split.assign_splits(its, 0.2, 0.1, seed=8) != s
    # A pure function of the set of files: input order does not matter.
    rev = split.assign_splits(its[::-1], 0.2, 0.1, seed=7)
    assert dict(zip(its[::-1], rev, strict=True)) == dict(zip(its, s, strict=True))


def test_adding_a_file_moves_at_most_a_couple_of_others():
    its = items({"a": 200})
    before = dict(zip(its, split.assign_splits(its, 0.2, 0.0, seed=0), strict=True))
    more = [*its, ("a/new.jpg", "a")]
    after = dict(zip(more, split.assign_splits(more, 0.2, 0.0, seed=0), strict=True))
    moved = [k for k in its if before[k] != after[k]]
    assert len(moved) <= 2


def test_manifest_round_trip_and_errors(tmp_path):
    rows = [
        ManifestRow("train", "cat/a b,c.jpg", "cat", 10, 123),
        ManifestRow("val", "d.png", "dog", 5, 6),
    ]
    split.write_manifest(tmp_path / "m.csv", rows)
    assert split.read_manifest(tmp_path / "m.csv") == rows
    (tmp_path / "bad.csv").write_text("path,label\nx,y\n")
    # a run-folder file: a damaged one is a RunError (exit 5) that says how to recover
    with pytest.raises(RunError, match="not a split manifest.*restore it, or delete it"):
        split.read_manifest(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("split,path,label,size,mtime_ns\ntrain,x,y,big,1\n")
    with pytest.raises(RunError, match="damaged"):
        split.read_manifest(tmp_path / "bad2.csv")
    (tmp_path / "cut.csv").write_text("split,path,label,size,mtime_ns\ntrain,x,y,1")
    with pytest.raises(RunError, match="damaged"):
        split.read_manifest(tmp_path / "cut.csv")
    with pytest.raises(RunError, match="cannot read"):
        split.read_manifest(tmp_path / "none.csv")


def test_diff_manifest(make_tree):
    root = make_tree({"cat": 3})
    d = split.discover(root)
    rows = []
    for c in d.cands:
        st = c.path.stat()
        rows.append(ManifestRow("train", c.rel, c.label, st.st_size, st.st_mtime_ns))
    assert not split.diff_manifest(rows, root, [c.rel for c in d.cands])
    (root / "cat/img000.png").unlink()
    write_image(root / "cat/img001.png", seed=99)  # modified
    os.utime(root / "cat/img001.png", ns=(1, 1))
    write_image(root / "cat/new.png")
    now = [c.rel for c in split.discover(root).cands]
    diff = split.diff_manifest(rows, root, now)
    assert diff.missing == ["cat/img000.png"]
    assert diff.modified == ["cat/img001.png"]
    assert diff.added == ["cat/new.png"]
    assert len(diff.lines()) == 3 and "1 missing" in diff.lines()[0]


def test_a_manifest_cut_short_is_named_even_at_a_line_boundary(tmp_path):
    from cnnlab.data.bundle import write_class_counts

    rows = [ManifestRow("train", f"c/{i}.png", "c", 1, 1) for i in range(4)]
    rows += [ManifestRow("val", "c/v.png", "c", 1, 1)]
    path = tmp_path / "split_manifest.csv"
    split.write_manifest(path, rows)
    write_class_counts(tmp_path, ["c"], {"train": [4], "val": [1]})
    assert split.read_manifest(path) == rows
    text = path.read_text()
    path.write_text(text[:-3])  # mid-row: no final newline
    with pytest.raises(RunError, match="cut short"):
        split.read_manifest(path)
    path.write_text("".join(text.splitlines(keepends=True)[:4]))  # whole rows, val ones gone
    with pytest.raises(RunError, match="lists 3 train files, class_counts.json 4: it is damaged"):
        split.read_manifest(path)
    (tmp_path / "class_counts.json").write_text("{damaged")  # nothing to compare: trusted
    assert len(split.read_manifest(path)) == 3
