from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from imagetree import add_bad_files, write_image

from cnnlab.data import imaging, scan
from cnnlab.data.scan import Candidate


def rel_reasons(skipped, root: Path) -> dict[str, str]:
    return {Path(s.path).relative_to(root).as_posix(): s.reason for s in skipped}


def candidates(root: Path, files: list[Path], label: str = "x") -> list[Candidate]:
    return [Candidate(f, f.relative_to(root).as_posix(), label) for f in files]


@pytest.fixture
def bad_tree(tmp_path):
    root = tmp_path / "data"
    expected = add_bad_files(root)
    for i in range(3):
        write_image(root / "cat" / f"good{i}.jpg", seed=i)
        write_image(root / "dog" / f"good{i}.png", seed=10 + i)
    write_image(root / "cat" / "nested" / "deep.jpg", seed=20)
    return root, expected


def walk_and_scan(root: Path, **kw):
    files, walk_skips = [], []
    for label in ("cat", "dog"):
        f, s = scan.walk(root / label)
        files += candidates(root, f, label)
        walk_skips += s
    ok, bad = scan.scan(files, threads=2, **kw)
    return ok, walk_skips + bad


def test_walk_lists_images_and_reports_the_rest(bad_tree):
    root, expected = bad_tree
    files, skipped = scan.walk(root / "cat")
    names = [f.relative_to(root).as_posix() for f in files]
    assert names == sorted(names)
    assert "cat/nested/deep.jpg" in names and "cat/good0.jpg" in names
    assert not any("/." in n for n in names)  # nothing hidden, nothing inside hidden folders
    # Listing reads no image bytes: it reports what names and links alone tell.
    listed = {"hidden", "not_image", "symlink_loop", "unsupported_format"}
    assert rel_reasons(skipped, root) == {
        k: v
        for k, v in expected.items()
        if k.startswith("cat/") and v in listed and k != "cat/ppm_named.png"  # needs bytes
    }
    assert {"cat/fifo.jpg", "cat/broken_link.jpg"} <= set(names)  # left for check_file


def test_scan_reports_exactly_the_bad_files(bad_tree):
    root, expected = bad_tree
    ok, skipped = walk_and_scan(root)
    assert rel_reasons(skipped, root) == expected
    good = sorted(r.cand.rel for r in ok)
    assert good == ["cat/good0.jpg", "cat/good1.jpg", "cat/good2.jpg", "cat/nested/deep.jpg"] + [
        f"dog/good{i}.png" for i in range(3)
    ]
    rec = next(r for r in ok if r.cand.rel == "cat/good0.jpg")
    assert rec.size == (root / "cat/good0.jpg").stat().st_size


def test_results_keep_input_order_and_do_not_depend_on_threads(bad_tree):
    root, _ = bad_tree
    files, _ = scan.walk(root / "cat")
    cands = candidates(root, files)
    one = scan.scan(cands, threads=1)
    four = scan.scan(cands, threads=4)
    assert one == four
    assert [r.cand for r in one[0]] == [c for c in cands if c in {r.cand for r in one[0]}]


def test_scan_cache_skips_decoding_unchanged_files(bad_tree, tmp_path, monkeypatch):
    root, expected = bad_tree
    cache_file = tmp_path / "scan.json"
    first = walk_and_scan(root, cache_file=cache_file)
    assert cache_file.exists()

    def no_decode(*a, **k):
        raise AssertionError("an unchanged file was decoded again")

    monkeypatch.setattr(imaging, "decode", no_decode)
    assert walk_and_scan(root, cache_file=cache_file) == first
    monkeypatch.undo()

    # A modified file (new size and mtime) is decoded again; now it is broken.
    (root / "cat/good1.jpg").write_bytes(b"now a text file")
    ok, skipped = walk_and_scan(root, cache_file=cache_file)
    assert rel_reasons(skipped, root)["cat/good1.jpg"] == "unidentified"
    assert "cat/good1.jpg" not in {r.cand.rel for r in ok}


def test_damaged_scan_cache_only_costs_a_rescan(bad_tree, tmp_path):
    root, expected = bad_tree
    cache_file = tmp_path / "scan.json"
    cache_file.write_text("{not json")
    ok, skipped = walk_and_scan(root, cache_file=cache_file)
    assert rel_reasons(skipped, root) == expected


class Sink:
    def __init__(self, have=()):
        self.have, self.got = set(have), {}

    def wants(self, path, size, mtime_ns):
        return path not in self.have

    short = 8

    def prepare(self, im):
        return imaging.resize_short(imaging.to_array(im), 8)

    def put(self, path, size, mtime_ns, arr):
        self.got[path] = arr


def test_scan_feeds_the_pixel_sink_from_the_same_decode(bad_tree, tmp_path):
    root, _ = bad_tree
    files, _ = scan.walk(root / "dog")
    cands = candidates(root, files)
    sink = Sink(have={cands[0].path})
    ok, _ = scan.scan(cands, pixels=sink, cache_file=tmp_path / "s.json")
    assert set(sink.got) == {c.path for c in cands[1:]}
    for path, arr in sink.got.items():
        np.testing.assert_array_equal(arr, imaging.prepare(path, 3, 8))
    # With a warm scan cache, files the sink still wants are decoded for it all the same.
    sink2 = Sink()
    scan.scan(cands, pixels=sink2, cache_file=tmp_path / "s.json")
    assert set(sink2.got) == {c.path for c in cands}


def test_walk_detects_a_directory_loop_without_recursing_forever(tmp_path):
    root = tmp_path / "a"
    write_image(root / "b" / "x.png")
    os.symlink(root, root / "b" / "back")  # absolute link to an ancestor
    os.symlink("b", root / "alias")  # a link to a sibling folder is followed, not a loop
    files, skipped = scan.walk(root)
    assert [f.relative_to(root).as_posix() for f in files] == ["alias/x.png", "b/x.png"]
    assert rel_reasons(skipped, root) == {"alias/back": "symlink_loop", "b/back": "symlink_loop"}


def test_symlinks_back_into_the_data_never_relabel_images(tmp_path):
    """`ln -s .. data/ants/up` would make bees/*.jpg train as ants: such links are skipped
    and named; a link to photos outside the data folder is followed."""
    data, outside = tmp_path / "data", tmp_path / "elsewhere"
    write_image(data / "ants" / "a.png")
    write_image(data / "bees" / "b.png")
    write_image(outside / "c.png")
    os.symlink("..", data / "ants" / "up")  # the data root itself
    os.symlink("../bees/b.png", data / "ants" / "stolen.png")  # a sibling class's image
    os.symlink(outside, data / "ants" / "more")  # outside the data folder: followed
    files, skipped = scan.walk(data / "ants", data)
    assert [f.relative_to(data).as_posix() for f in files] == ["ants/a.png", "ants/more/c.png"]
    assert rel_reasons(skipped, data) == {
        "ants/up": "symlink_into_data", "ants/stolen.png": "symlink_into_data",
    }  # fmt: skip
