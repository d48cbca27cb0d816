"""Read IDX files, the format of MNIST and Fashion-MNIST, plain or gzip-compressed.

Layout (big-endian): two zero bytes, a dtype code (0x08 = unsigned byte), the number of
dimensions, one uint32 per dimension, then the row-major payload. So the magic number is
0x00000803 for an (N, 28, 28) image file and 0x00000801 for an (N,) label file.

    >>> images = read_idx(Path("train-images-idx3-ubyte.gz"), expect_ndim=3, expect_count=60000)
    >>> images.shape, images.dtype
    ((60000, 28, 28), dtype('uint8'))

Every defect (wrong magic, unexpected shape, short or over-long payload, damaged gzip stream)
becomes a one-line `DataError` that names the file, what is wrong, and the fix.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cnnlab.errors import DataError

UBYTE = 0x08
# The other codes the IDX spec defines; named in errors so a float file is not called "garbage".
_OTHER_DTYPES = {
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_FIX = "delete it and download it again"


def read_idx(
    path: Path,
    expect_ndim: int | None = None,
    expect_count: int | None = None,
    *,
    fix: str = DEFAULT_FIX,
) -> np.ndarray:
    """The uint8 array stored in `path` (read-only; shape from the header).

    `expect_ndim` / `expect_count` (the first dimension) turn a file of the wrong kind or split
    into a DataError instead of a surprise later. `fix` ends every error message.
    """
    path = Path(path)

    def corrupt(problem: str) -> DataError:
        return DataError(f"{path} is corrupt: {problem}; {fix}")

    try:
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if is_gzip:
                with gzip.GzipFile(fileobj=raw) as fh:
                    return _read_stream(fh, expect_ndim, expect_count, corrupt)
            return _read_stream(raw, expect_ndim, expect_count, corrupt)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        # BadGzipFile: bad header or CRC mismatch; EOFError: the .gz was cut short mid-stream.
        raise corrupt(f"damaged gzip stream ({exc})") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; check the path") from exc


def _read_stream(
    fh: BinaryIO,
    expect_ndim: int | None,
    expect_count: int | None,
    corrupt: Callable[[str], DataError],
) -> np.ndarray:
    magic = fh.read(4)
    if len(magic) < 4:
        raise corrupt(f"file holds {len(magic)} bytes, too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", magic)
    if zero != 0:
        raise corrupt(f"magic number 0x{magic.hex()} is not an IDX header (0x000008NN)")
    if dtype != UBYTE:
        kind = _OTHER_DTYPES.get(dtype, "unknown")
        raise corrupt(f"dtype code 0x{dtype:02X} ({kind}); only unsigned byte (0x08) is supported")
    if ndim == 0 or (expect_ndim is not None and ndim != expect_ndim):
        want = f"0x0000080{expect_ndim}" if expect_ndim is not None else "at least 1 dimension"
        raise corrupt(f"magic number 0x{magic.hex()} has {ndim} dimensions, expected {want}")

    header = fh.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise corrupt(f"header ends after {len(header)} of {4 * ndim} dimension bytes")
    shape = struct.unpack(f">{ndim}I", header)
    if expect_count is not None and shape[0] != expect_count:
        raise corrupt(f"header says {shape[0]:,} items, expected {expect_count:,}")

    # Read exactly the declared payload plus one probe byte: a lying header cannot make us
    # decompress more than it promised, and the probe catches trailing bytes. For gzip the
    # probe also reaches the end-of-stream marker, which is where the CRC gets checked.
    expected = math.prod(shape)
    payload = fh.read(expected)
    dims = "×".join(str(d) for d in shape)
    if len(payload) < expected:
        raise corrupt(f"expected {expected:,} data bytes for shape {dims}, found {len(payload):,}")
    if fh.read(1):
        raise corrupt(f"trailing bytes after the {expected:,} data bytes for shape {dims}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)
