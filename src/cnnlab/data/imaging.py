"""One image file -> uint8 pixels, with cnnlab's policy for bad files in one place.

`decode` is how training data and `predict` open user images: the scan (full decode, up front),
the pixel cache fill, a dataset without cache and `predict` all go through it, so they agree pixel
for pixel (`cnnlab conv` opens a picture of its own). Nothing here changes Pillow's global
settings: the decompression-bomb limit is checked explicitly, before any pixel is decoded, and a
truncated file fails the full decode (Pillow's default LOAD_TRUNCATED_IMAGES=False).

Reason codes: why a file was skipped (skipped.csv, console summary). A file is never modified.

  found while listing folders (scan.py / split.py), no image bytes read:
    hidden              name starts with '.' or is __MACOSX (.DS_Store, ._x.jpg, .ipynb_checkpoints/)
    not_image           extension is not an image extension (notes.txt, labels.json)
    outside_layout      a file where the layout expects a folder (PATH/x.jpg beside class folders)
    symlink_loop        a symlink that points to itself or to one of its parent folders
    symlink_into_data   a symlink into the data folder from elsewhere in it (another class's
                        images would be counted again, under this class); links that lead
                        outside the data folder are followed
    missing             listed in a CSV or split manifest, not on disk
    duplicate           listed twice in a CSV
  found while reading (this module):
    unreadable          permission denied, broken symlink, not a regular file (FIFO, socket)
    empty_file          0 bytes
    too_large           file above MAX_FILE_BYTES
    unidentified        no allowed decoder recognises it (a text file named .jpg, random bytes)
    unsupported_format  a real image in a format cnnlab does not read (PPM, ICO, HEIC, ...)
    bomb                declared pixel count above Image.MAX_IMAGE_PIXELS; refused before decoding
    truncated           the file ends early
    corrupt             any other decoder error (bad PNG CRC, broken data stream, bad mode)
    too_small           shorter side under MIN_SIDE pixels (after EXIF rotation)
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Decoders Pillow may even try: restricting them keeps exotic plugins (FITS, ...) and their
# format-specific bombs out of reach (RELIABILITY.md B2). Camera JPEGs that Pillow names MPO come
# in through the JPEG decoder.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
# Images we recognise by extension but do not read: reported as unsupported_format, not not_image,
# so that the message can say "convert them" instead of "not an image".
OTHER_IMAGE_EXTENSIONS = frozenset(
    {".heic", ".heif", ".avif", ".jp2", ".j2k", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".tga"}
    | {".psd", ".svg", ".dng", ".cr2", ".nef", ".arw", ".raw", ".fits", ".exr", ".hdr", ".jxl"}
)
HIDDEN_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
MIN_SIDE = 8  # below this a CNN sees noise; ultralytics uses 10
MAX_FILE_BYTES = 512 * 1024 * 1024  # no photo is this big; a bigger file is a mistake or an attack

REASONS = {
    "hidden": "hidden or system file",
    "not_image": "not an image extension",
    "outside_layout": "not inside a class folder",
    "symlink_loop": "symlink loop",
    "symlink_into_data": "symlink back into the data folder (would mislabel its images)",
    "missing": "listed but not on disk",
    "duplicate": "listed twice",
    "unreadable": "cannot be read",
    "empty_file": "empty file",
    "too_large": "file too large",
    "unidentified": "not a readable image",
    "unsupported_format": "image format not supported",
    "bomb": "decompression bomb",
    "truncated": "truncated image",
    "corrupt": "corrupt image",
    "too_small": "image too small",
}
# Reasons that mean "a broken image", as opposed to a file that is simply not part of the data:
# `on_bad_image="fail"` raises only for these.
BAD_IMAGE_REASONS = frozenset(REASONS) - {
    "hidden", "not_image", "outside_layout", "symlink_into_data",
}  # fmt: skip

_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


# Filters torchvision's tensor resize implements; the others are Pillow's only. Names, not enum
# values: this module imports no torch, so that cnnlab.deploy can decode images without it.
TENSOR_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


class ImageError(Exception):
    """A file cnnlab will not use; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name in HIDDEN_NAMES


def extension_reason(name: str) -> str | None:
    """None for an image extension, else 'not_image' or 'unsupported_format'."""
    ext = os.path.splitext(name)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return None
    return "unsupported_format" if ext in OTHER_IMAGE_EXTENSIONS else "not_image"


def check_file(path: Path) -> os.stat_result:
    """stat() that turns every reason not to open a file into an ImageError."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageError("symlink_loop", "symlink points back to itself") from e
        if os.path.islink(path):
            raise ImageError("unreadable", f"broken symlink to {os.readlink(path)}") from e
        raise ImageError("unreadable", e.strerror or str(e)) from e
    if not stat.S_ISREG(st.st_mode):
        raise ImageError("unreadable", "not a regular file")  # a FIFO would block forever
    if st.st_size == 0:
        raise ImageError("empty_file", "0 bytes")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError("too_large", f"{st.st_size} bytes, above the {MAX_FILE_BYTES} cap")
    return st


def decode(path: str | os.PathLike, in_chans: int = 3, draft: int | None = None) -> Image.Image:
    """Fully decoded, EXIF-rotated image in mode 'RGB' (in_chans=3) or 'L' (in_chans=1).

    `draft`: the shorter side the caller will resize to. A JPEG at least twice that size is then
    decoded at 1/2, 1/4 or 1/8 scale by libjpeg (never below `draft`): 4-8x faster on camera
    photos. The whole file is still entropy-decoded, so truncation is caught all the same.
    Raises ImageError with a reason code; never returns a partial image.
    """
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    path = Path(path)
    check_file(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the full decode
    except OSError as e:
        raise ImageError("unreadable", e.strerror or str(e)) from e
    try:
        with fh:
            im = _open_checked(fh)
            if draft and im.format in ("JPEG", "MPO"):
                im.draft(im.mode, short_side_size(im.width, im.height, draft))
            im.load()  # the full decode: truncation shows here, not at open()
        _exif_transpose(im)
        if min(im.size) < MIN_SIDE:
            raise ImageError("too_small", f"{im.width}x{im.height} px, need {MIN_SIDE} px or more")
        return to_mode(im, in_chans)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError("bomb", str(e)) from e
    except OSError as e:
        reason = "truncated" if "truncated" in str(e).lower() else "corrupt"
        raise ImageError(reason, str(e)) from e
    except Exception as e:  # Pillow plugins raise many types on malformed data
        raise ImageError("corrupt", f"{type(e).__name__}: {e}") from e


def _open_checked(fh) -> Image.Image:
    try:
        im = Image.open(fh, formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError("bomb", str(e)) from e
    except Image.UnidentifiedImageError as e:
        fmt = _identify_any(fh)
        if fmt:
            raise ImageError("unsupported_format", f"{fmt} is not read by cnnlab") from e
        raise ImageError("unidentified", "no image decoder recognises it") from e
    # Checked here too, so the policy holds even if someone reset the warnings filters
    # (pytest does, per test): the declared size is known before any pixel is decoded.
    if im.width * im.height > Image.MAX_IMAGE_PIXELS:
        raise ImageError(
            "bomb", f"declares {im.width}x{im.height} px, above {Image.MAX_IMAGE_PIXELS}"
        )
    return im


def _identify_any(fh) -> str | None:
    """Format name from any Pillow plugin's header parser; never decodes pixels."""
    # No warnings.catch_warnings() here: it is not thread-safe and the scan runs in threads.
    try:
        fh.seek(0)
        with Image.open(fh) as im:
            return im.format
    except Exception:  # any failure simply means "not an image we know"
        return None


def _exif_transpose(im: Image.Image) -> None:
    # A broken EXIF block must not reject a good photo; in place: no copy of a large photo.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(im, in_place=True)


def to_mode(im: Image.Image, in_chans: int) -> Image.Image:
    """Any Pillow mode -> 'RGB' or 'L'; alpha composited on white, 16-bit scaled to 8-bit."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        im = _high_bit_depth_to_l(im)
        return im if in_chans == 1 else im.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
    elif in_chans == 1 and mode in ("L", "1"):
        return im.convert("L")
    elif mode != "RGB":
        im = im.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...
    return im.convert("L") if in_chans == 1 else im


def _high_bit_depth_to_l(im: Image.Image) -> Image.Image:
    a = np.asarray(im)
    if im.mode == "F":
        # Float images hold [0, 1] or [0, 255] by convention; pick by range.
        scale = 255.0 if np.nanmax(a, initial=0.0) <= 1.0 else 1.0
        out = np.clip(np.nan_to_num(a) * scale, 0, 255) + 0.5
        return Image.fromarray(out.astype(np.uint8), "L")
    # I;16 (and I, read as 16-bit): 0..65535 -> 0..255 with rounding, i.e. x / 257.
    a = np.clip(a.astype(np.int64), 0, 65535)
    return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")


def short_side_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(w, h) with the shorter side = `short`, same arithmetic as torchvision's Resize(int).

    Matching torchvision exactly makes `v2.Resize(short)` a no-op on cached arrays, so one eval
    transform serves both a cached array and a freshly decoded file.
    """
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def to_array(im: Image.Image) -> np.ndarray:
    """(H, W, C) uint8, C = 1 for 'L'; writable, so torch.from_numpy accepts it silently."""
    a = np.array(im, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def resize_short(a: np.ndarray, short: int, interpolation: str = "bilinear") -> np.ndarray:
    """(H, W, C) uint8 with the shorter side resized to `short`, aspect ratio kept.

    This is torchvision's antialiased Resize(short), the very kernel the eval transform would
    apply to a full-size image (and 2-3x faster than Pillow's resize), so a cached array equals
    Resize on a fresh decode.
    """
    h, w = a.shape[:2]
    new_w, new_h = short_side_size(w, h, short)
    if (new_h, new_w) == (h, w):
        return a
    if interpolation not in TENSOR_INTERPOLATIONS:  # lanczos, box, hamming: Pillow only
        return resize_pillow(a, new_h, new_w, interpolation)
    import torch  # here, not at the top: decoding must not need torch (cnnlab.deploy)
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = torch.from_numpy(a).permute(2, 0, 1)  # (C, H, W) view, channels-last in memory
    mode = InterpolationMode(interpolation)
    y = TF.resize(x, [new_h, new_w], interpolation=mode, antialias=True)
    return y.permute(1, 2, 0).numpy()  # channels-last output: a contiguous (H, W, C) view


def resize_pillow(a: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    """(H, W, C) uint8 resized with Pillow's filter of that name (lanczos, box, hamming, ...)."""
    im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    return to_array(im.resize((width, height), _INTERPOLATION[interpolation]))


def load_image(path: str | os.PathLike, in_chans: int = 3) -> np.ndarray:
    """(H, W, C) uint8 at full resolution, C = in_chans. Raises ImageError."""
    return to_array(decode(path, in_chans))


def prepare(
    path: str | os.PathLike, in_chans: int, short: int, interpolation: str = "bilinear"
) -> np.ndarray:
    """What the pixel cache stores: decode, then shorter side resized to `short`."""
    im = decode(path, in_chans, draft=short)
    return resize_short(to_array(im), short, interpolation)
