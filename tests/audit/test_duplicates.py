import numpy as np
import pytest

from cnnlab.audit import duplicates as D
from cnnlab.audit.findings import Code, Severity


def test_exact_groups():
    assert D.exact_groups([b"a", b"b", b"a", b"c", b"b", b"a"]) == [[0, 2, 5], [1, 4]]
    assert D.exact_groups([b"a", b"b"]) == []


def test_components_join_exact_groups_and_pairs():
    pairs = [D.Pair(2, 6, False, 3), D.Pair(7, 8, False, 1)]
    assert D.components(10, [[0, 2], [4, 5]], pairs) == [[0, 2, 6], [4, 5], [7, 8]]


def ctx(splits, labels, editable=True, nonphoto=False):
    n = len(splits)
    return (
        D.DupContext(
            rels=[f"{s}/{c}/f{i}.jpg" for i, (s, c) in enumerate(zip(splits, labels, strict=True))],
            splits=list(splits),
            labels=np.array([{"ant": 0, "bee": 1}[c] for c in labels]),
            classes=["ant", "bee"],
            root="/data",
            editable=editable,
            nonphoto=lambda i: nonphoto,
        )
        if n
        else None
    )


def test_cross_split_exact_copy_is_an_error_that_keeps_the_held_out_copy():
    c = ctx(["train", "val", "train"], ["ant", "ant", "ant"])
    out = D.duplicate_findings([[0, 1]], [], c, D.DupThresholds())
    assert [f.code for f in out] == [Code.CROSS_SPLIT_DUPLICATE]
    f = out[0]
    assert f.severity is Severity.ERROR
    assert f.files == ("val/ant/f1.jpg", "train/ant/f0.jpg")  # the kept copy first
    assert f.splits == ("val", "train")
    assert f.evidence["kind"] == "exact"
    assert f.evidence["pairs"][0]["splits"] == ["train", "val"]
    assert f.fix.endswith("rm /data/train/ant/f0.jpg")
    assert "exact copy" in f.title


def test_within_split_exact_is_a_warning_and_near_is_info():
    c = ctx(["train"] * 4, ["ant"] * 4)
    near = D.Pair(2, 3, False, 4, "mirrored", edge=0.97)
    out = D.duplicate_findings([[0, 1]], [near], c, D.DupThresholds())
    codes = {f.code: f for f in out}
    assert codes[Code.EXACT_DUPLICATE].severity is Severity.WARNING
    assert codes[Code.NEAR_DUPLICATE].severity is Severity.INFO
    ev = codes[Code.NEAR_DUPLICATE].evidence["pairs"][0]
    assert ev["match"] == "mirrored" and ev["hash_distance"] == 4
    assert ev["edge_correlation"] == pytest.approx(0.97)


def test_different_labels_make_a_placeholder_or_a_label_conflict():
    c = ctx(["train", "train", "val"], ["ant", "bee", "bee"], nonphoto=True)
    out = D.duplicate_findings([[0, 1, 2]], [], c, D.DupThresholds())
    assert {f.code for f in out} == {Code.PLACEHOLDER, Code.CROSS_SPLIT_DUPLICATE}
    ph = next(f for f in out if f.code is Code.PLACEHOLDER)
    assert ph.evidence["labels"] == ["ant", "bee"] and "rm" in ph.fix
    c = ctx(["train", "train"], ["ant", "bee"], nonphoto=False)
    out = D.duplicate_findings([[0, 1]], [], c, D.DupThresholds())
    assert [f.code for f in out] == [Code.CONFLICTING_LABELS]


def test_builtin_data_gets_no_rm_command():
    c = ctx(["train", "test"], ["ant", "ant"], editable=False)
    (f,) = D.duplicate_findings([[0, 1]], [], c, D.DupThresholds())
    assert "rm" not in f.fix and "built-in" in f.fix


def thumbs_of(patterns):
    t = np.stack([np.stack([p, p, p]) for p in patterns]).astype(np.uint8)
    return t  # (N, 3 crops, 32, 32): the same pattern in every crop, enough for these rules


def test_near_pairs_hash_rule_needs_the_edges_to_agree():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32))
    b = rng.integers(0, 256, (32, 32))
    thumbs = thumbs_of([a, a, b])
    h = np.array([[1, 1, 1], [3, 3, 3], [7, 7, 7]], dtype=np.uint64)  # all within 2 bits
    m = np.array([2**62, 2**61, 2**60], dtype=np.uint64)
    pairs = D.near_pairs(h, m, thumbs, D.DupThresholds(radius=4))
    # 0-1 agree in pixels; 0-2 and 1-2 collide in hash only
    assert [(p.i, p.j) for p in pairs] == [(0, 1)]
    assert pairs[0].how == "re-encoded or resized" and pairs[0].edge == pytest.approx(1.0)


def test_near_pairs_embedding_rule_aligns_a_crop_anywhere():
    from audittree import photo
    from PIL import Image

    from cnnlab.audit.hashing import gray, thumbnails

    big = np.kron(photo(1, size=(40, 30)), np.ones((4, 4, 1), np.uint8))  # 160 x 120, sharp
    crop = np.ascontiguousarray(
        big[12:120, 0:144][:, ::-1]
    )  # 90% window, left and bottom, mirrored
    other = np.kron(photo(2, size=(40, 30)), np.ones((4, 4, 1), np.uint8))
    imgs = [big, crop, other]
    grays = [gray(a) for a in imgs]
    thumbs = np.stack([thumbnails(g) for g in grays])
    far = np.array([0, 2**64 - 1, 0x00000000FFFFFFFF], dtype=np.uint64)
    h, m = np.stack([far] * 3, axis=1), ~far  # no hash rule match
    e = np.full((3, 2), 1 / np.sqrt(2), dtype=np.float32)  # every pair a candidate (cosine 1)
    pairs = D.near_pairs(h, m, thumbs, D.DupThresholds(), e, gray=grays.__getitem__)
    assert [(p.i, p.j) for p in pairs] == [(0, 1)]
    assert pairs[0].how == "mirrored, cropped to 90% at (0%, 10%)"
    assert pairs[0].cosine == pytest.approx(1.0) and pairs[0].edge > 0.9
    assert isinstance(grays[0], Image.Image)
