import numpy as np
import pytest
from audittree import jpeg_q, photo

from cnnlab.audit import align
from cnnlab.audit.hashing import THUMB, gray, thumbnails


def sharp(seed, size=(40, 30)):
    return np.kron(photo(seed, size=size), np.ones((4, 4, 1), np.uint8))  # 160 x 120


def test_edge_correlation_tells_copies_from_look_alikes():
    a = sharp(1)
    t = thumbnails(gray(a))[0]
    copy = thumbnails(gray(jpeg_q(a, 60)))[0]
    assert align.edge_correlation(t, copy) > 0.97
    # nearly the same silhouette (a bright rectangle on black, one pixel taller), other texture
    rng = np.random.default_rng(0)
    x, y = np.zeros((32, 32)), np.zeros((32, 32))
    x[6:26, 8:24] = 200
    y[6:27, 8:24] = 200
    x = (x + rng.normal(0, 8, x.shape)).clip(0, 255).astype(np.uint8)
    y = (y + rng.normal(0, 8, y.shape)).clip(0, 255).astype(np.uint8)
    from cnnlab.audit.hashing import correlation

    assert correlation(x, y) > 0.95  # grey levels: nearly the same picture
    assert align.edge_correlation(x, y) < 0.6  # edges: not the same picture
    flat = np.full((32, 32), 90, np.uint8)
    assert align.edge_correlation(flat, flat) == 1.0


def test_laplacian_by_hand():
    t = np.zeros((3, 3))
    t[1, 1] = 1
    assert align.laplacian(t).tolist() == [[4.0]]


@pytest.mark.parametrize("fx, fy", [(0.0, 0.0), (0.1, 0.05), (0.05, 0.1)])
def test_best_alignment_finds_the_crop_box(fx, fy):
    a = sharp(3)
    h, w = a.shape[:2]
    x0, y0 = round(fx * w), round(fy * h)
    crop = a[y0 : y0 + round(0.9 * h), x0 : x0 + round(0.9 * w)]
    al = align.best_alignment(gray(a), gray(crop))
    assert al.scale == 0.9 and al.crop_of == "a" and not al.mirrored
    assert al.offset == pytest.approx((round(fx * 60) / 60, round(fy * 60) / 60), abs=0.02)
    assert al.edge > 0.8
    # the other way round: a is the crop of b
    assert align.best_alignment(gray(crop), gray(a)).crop_of == "b"


def test_unrelated_images_do_not_align():
    al = align.best_alignment(gray(sharp(4)), gray(sharp(5)))
    assert al.edge < 0.5


def test_windows_cover_the_grid():
    g = gray(sharp(6))
    meta, thumbs = align.windows(g)
    assert len(meta) == len(thumbs) == 1 + 2 * align.STEPS**2
    assert thumbs.shape[1:] == (THUMB, THUMB)
    assert meta[0] == (1.0, (0.0, 0.0)) and meta[-1][1] == pytest.approx((0.2, 0.2))
    assert np.array_equal(thumbs[0], np.asarray(g.resize((THUMB, THUMB), 4)))


def test_vectorised_edge_correlations_equal_one_by_one():
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 256, (5, 32, 32)).astype(np.uint8)
    stack[2] = 77  # flat
    b = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    many = align.edge_correlations(stack, b)
    for k in range(5):
        x, y = align.laplacian(stack[k]).ravel(), align.laplacian(b).ravel()
        expected = np.corrcoef(x, y)[0, 1] if k != 2 else 0.0
        assert many[k] == pytest.approx(expected, abs=1e-9)
