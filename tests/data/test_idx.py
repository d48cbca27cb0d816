import gzip
import struct

import numpy as np
import pytest

from cnnlab.data.idx import read_idx
from cnnlab.errors import DataError


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, dtype_code, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write(path, data: bytes, compress: bool = True):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


IMAGES = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
LABELS = np.array([9, 0, 3], dtype=np.uint8)


def test_reads_gzip_images_and_plain_labels(tmp_path):
    images = read_idx(write(tmp_path / "img.gz", idx_bytes(IMAGES)), 3, 3)
    labels = read_idx(write(tmp_path / "lbl", idx_bytes(LABELS), compress=False), 1, 3)
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, IMAGES)
    np.testing.assert_array_equal(labels, LABELS)
    assert not images.flags.writeable  # a view on the decompressed bytes, no copy


def test_without_expectations_shape_comes_from_header(tmp_path):
    array = np.zeros((2, 3, 4, 5), dtype=np.uint8)
    assert read_idx(write(tmp_path / "x.gz", idx_bytes(array))).shape == (2, 3, 4, 5)


GOOD = idx_bytes(IMAGES)


def _truncate_gzip(data: bytes) -> bytes:
    return gzip.compress(data)[:-100]


def _bad_crc(data: bytes) -> bytes:
    blob = bytearray(gzip.compress(data))
    blob[-8] ^= 0xFF  # the CRC32 sits in the 8-byte trailer
    return bytes(blob)


# (case, raw file bytes, words the message must contain)
CORRUPT = [
    ("wrong magic", b"PK\x03\x04" + GOOD[4:], "magic number 0x504b0304"),
    ("wrong dtype", GOOD[:2] + b"\x0d" + GOOD[3:], "dtype code 0x0D (float32)"),
    ("labels as images", idx_bytes(LABELS), "expected 0x00000803"),
    ("wrong count", idx_bytes(IMAGES[:2]), "header says 2 items, expected 3"),
    ("truncated payload", GOOD[:-1000], "expected 2,352 data bytes for shape 3×28×28, found 1,352"),
    ("trailing bytes", GOOD + b"\x00", "trailing bytes"),
    ("short header", GOOD[:10], "header ends"),
    ("empty", b"", "too short"),
]


@pytest.mark.parametrize(("case", "data", "words"), CORRUPT, ids=[c[0] for c in CORRUPT])
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_corrupt_file_is_a_data_error_naming_the_file(tmp_path, case, data, words, compress):
    path = write(tmp_path / "train-images-idx3-ubyte.gz", data, compress)
    with pytest.raises(DataError) as err:
        read_idx(path, expect_ndim=3, expect_count=3, fix="delete it and run `x`")
    message = str(err.value)
    assert str(path) in message and words in message and message.endswith("run `x`")
    assert "\n" not in message


@pytest.mark.parametrize("damage", [_truncate_gzip, _bad_crc], ids=["truncated", "crc"])
def test_damaged_gzip_is_a_data_error_naming_the_file(tmp_path, damage):
    path = write(tmp_path / "t10k-images-idx3-ubyte.gz", damage(GOOD), compress=False)
    with pytest.raises(DataError, match="damaged gzip stream") as err:
        read_idx(path, 3, 3)
    assert str(path) in str(err.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read .*nope.gz"):
        read_idx(tmp_path / "nope.gz")
