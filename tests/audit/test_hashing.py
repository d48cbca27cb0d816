import numpy as np
import pytest
from audittree import center_crop, jpeg_q, photo, resized

from cnnlab.audit import hashing


def test_digest_names_pixels_and_shape():
    a = photo(1)
    assert hashing.digest(a) == hashing.digest(a.copy())
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert hashing.digest(a) != hashing.digest(b)
    # same bytes, other shape: not the same image
    assert hashing.digest(a) != hashing.digest(a.reshape(a.shape[1], a.shape[0], 3))


def test_dct_matrix_is_orthonormal_and_matches_scipy():
    m = hashing.dct_matrix(32)
    assert np.allclose(m @ m.T, np.eye(32), atol=1e-12)
    fft = pytest.importorskip("scipy.fft")
    x = np.random.default_rng(0).normal(size=32)
    assert np.allclose(m @ x, fft.dct(x, norm="ortho"))


def test_mirrored_hash_equals_hash_of_the_mirrored_thumbnail():
    rng = np.random.default_rng(0)
    thumbs = rng.integers(0, 256, (20, 32, 32)).astype(np.uint8)
    h, m = hashing.phash(thumbs)
    h_flipped, _ = hashing.phash(thumbs[:, :, ::-1].copy())
    assert np.array_equal(m, h_flipped)
    assert (hashing.hamming(h, m) > 0).all()  # a random pattern is not symmetric


def test_hash_bits_are_the_low_frequencies_above_their_median():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 256, (1, 32, 32)).astype(np.uint8)
    h, _ = hashing.phash(t)
    # independent computation with a plain loop DCT
    n = 32
    basis = np.array(
        [[np.cos(np.pi * (2 * i + 1) * k / (2 * n)) for i in range(n)] for k in range(8)]
    )
    scale = np.array([np.sqrt(1 / n)] + [np.sqrt(2 / n)] * 7)
    low = (scale[:, None] * basis) @ t[0].astype(float) @ (scale[:, None] * basis).T
    bits = (low > np.median(low)).ravel()
    expected = int("".join("1" if b else "0" for b in bits), 2)
    assert int(h[0]) == expected


def test_popcount_and_hamming():
    x = np.array([0, 1, 3, 2**63, 2**64 - 1], dtype=np.uint64)
    assert hashing.popcount(x).tolist() == [0, 1, 2, 1, 64]
    a = np.array([0b1011], dtype=np.uint64)
    b = np.array([0b0110], dtype=np.uint64)
    assert hashing.hamming(a, b).tolist() == [3]


@pytest.mark.parametrize(
    "change",
    [
        lambda a: jpeg_q(a, 60),
        lambda a: resized(a, 0.7),
        lambda a: a[:, ::-1],
    ],
    ids=["jpeg60", "resize0.7", "flip"],
)
def test_copies_hash_close_and_other_images_far(change):
    a = resized(photo(5, size=(96, 72)), 2.0)  # a larger, smoother photo-like image
    b = np.ascontiguousarray(change(a))
    ta = hashing.thumbnails(hashing.gray(a))
    tb = hashing.thumbnails(hashing.gray(b))
    h, m = hashing.phash(np.stack([ta[0], tb[0]]))
    dist = min(int(hashing.hamming(h[0], h[1])), int(hashing.hamming(h[0], m[1])))
    assert dist <= 6
    other = hashing.thumbnails(hashing.gray(resized(photo(6, size=(96, 72)), 2.0)))
    ho, mo = hashing.phash(other[:1])
    assert min(int(hashing.hamming(h[0], ho[0])), int(hashing.hamming(h[0], mo[0]))) > 14


def test_crop_thumbnail_matches_the_cropped_copy():
    a = resized(photo(5, size=(96, 72)), 3.0)
    crop = center_crop(a, 0.9)
    t_orig = hashing.thumbnails(hashing.gray(a))
    t_crop = hashing.thumbnails(hashing.gray(crop))
    # the original's 90% thumbnail sees what the crop's whole thumbnail sees
    assert hashing.correlation(t_orig[1], t_crop[0]) > 0.97
    assert hashing.correlation(t_orig[1], t_crop[0]) > hashing.correlation(t_orig[0], t_crop[0])


def test_correlation_of_flat_thumbnails():
    flat = np.full((32, 32), 100, dtype=np.uint8)
    assert hashing.correlation(flat, flat + 3) == 1.0
    assert hashing.correlation(flat, flat + 60) == 0.0
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    assert hashing.correlation(noise, noise) == pytest.approx(1.0)
    assert hashing.correlation(noise, 255 - noise) == pytest.approx(-1.0)
