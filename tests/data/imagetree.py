"""Generators of tiny images and image trees, good and broken (helpers for tests/data).

A module of its own, not conftest.py: test modules import these by name, and several
conftest.py files in one session would shadow each other under the module name "conftest".
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def pixels(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth random content: compresses like a photo, differs per seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, h // 4), max(2, w // 4), c), dtype=np.uint8)
    im = Image.fromarray(small.squeeze(-1) if c == 1 else small)
    a = np.array(im.resize((w, h), Image.Resampling.BILINEAR))
    return a.reshape(h, w, c)


def write_image(
    path: Path, size: tuple[int, int] = (24, 18), seed: int = 0, mode: str = "RGB", **save
) -> Path:
    """An image of `size` (w, h) in `mode`, format from the extension unless `format=` given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    im = Image.fromarray(pixels(h, w, 3, seed))
    if mode != "RGB":
        im = im.convert(mode)
    im.save(path, **save)
    return path


def jpeg_bytes(size: tuple[int, int] = (24, 18), seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels(size[1], size[0], 3, seed)).save(buf, "JPEG")
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A few hundred bytes declaring w x h RGB pixels: Pillow must refuse it at open()."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body + png_chunk(b"IEND", b""))
    return path


def corrupt_png(path: Path) -> Path:
    write_image(path)
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside IDAT: zlib stream broken
    path.write_bytes(bytes(data))
    return path


# Every bad input of the issue, as {relative path: expected reason}, written by `add_bad_files`.
BAD_FILES = {
    "cat/truncated.jpg": "truncated",
    "cat/truncated.png": "truncated",
    "cat/corrupt.png": "corrupt",
    "cat/text.jpg": "unidentified",
    "cat/zero.png": "empty_file",
    "cat/bomb.png": "bomb",
    "cat/ppm_named.png": "unsupported_format",
    "cat/photo.heic": "unsupported_format",
    "cat/tiny.png": "too_small",
    "cat/fifo.jpg": "unreadable",
    "cat/broken_link.jpg": "unreadable",
    "cat/loop.jpg": "symlink_loop",
    "cat/sub/up": "symlink_loop",
    "cat/.DS_Store": "hidden",
    "cat/._x.jpg": "hidden",
    "cat/.ipynb_checkpoints": "hidden",
    "cat/notes.txt": "not_image",
    "dog/labels.json": "not_image",
}


def add_bad_files(root: Path) -> dict[str, str]:
    """Write BAD_FILES under `root` (which should hold cat/ and dog/); returns BAD_FILES."""
    cat = root / "cat"
    (cat / "sub").mkdir(parents=True, exist_ok=True)
    (root / "dog").mkdir(exist_ok=True)
    (cat / "truncated.jpg").write_bytes(jpeg_bytes()[:300])
    full = write_image(cat / "truncated.png").read_bytes()
    (cat / "truncated.png").write_bytes(full[: len(full) // 2])
    corrupt_png(cat / "corrupt.png")
    (cat / "text.jpg").write_text("this is not a JPEG\n")
    (cat / "zero.png").write_bytes(b"")
    bomb_png(cat / "bomb.png")
    write_image(cat / "ppm_named.png", format="PPM")
    (cat / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic")
    write_image(cat / "tiny.png", size=(4, 4))
    os.mkfifo(cat / "fifo.jpg")
    os.symlink(cat / "nowhere.jpg", cat / "broken_link.jpg")
    os.symlink("loop.jpg", cat / "loop.jpg")
    os.symlink("..", cat / "sub" / "up")
    (cat / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (cat / "._x.jpg").write_bytes(b"\0\5\x16\7AppleDouble")
    (cat / ".ipynb_checkpoints").mkdir()
    write_image(cat / ".ipynb_checkpoints" / "a.jpg")
    (cat / "notes.txt").write_text("notes")
    (root / "dog" / "labels.json").write_text("{}")
    return dict(BAD_FILES)
