from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from imagetree import bomb_png, corrupt_png, jpeg_bytes, write_image
from PIL import Image, ImageFile
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional._geometry import _compute_resized_output_size

from cnnlab.data import imaging
from cnnlab.data.imaging import ImageError


def reason_of(path: Path, in_chans: int = 3) -> str:
    with pytest.raises(ImageError) as info:
        imaging.decode(path, in_chans)
    return info.value.reason


def test_importing_changes_no_pillow_or_warnings_setting():
    import subprocess
    import sys

    probe = (
        "import warnings; from PIL import Image, ImageFile; "
        "limit = Image.MAX_IMAGE_PIXELS; import cnnlab.data.imaging, cnnlab.data.folder; "
        "assert not [f for f in warnings.filters if f[2] is Image.DecompressionBombWarning]; "
        "assert Image.MAX_IMAGE_PIXELS == limit and ImageFile.LOAD_TRUNCATED_IMAGES is False"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


@pytest.mark.parametrize(
    ("mode", "in_chans"),
    [("RGB", 3), ("L", 3), ("L", 1), ("1", 3), ("P", 3), ("CMYK", 3), ("RGB", 1)],
)
def test_modes_become_rgb_or_l(tmp_path, mode, in_chans):
    ext = ".jpg" if mode == "CMYK" else ".png"
    path = write_image(tmp_path / f"x{ext}", size=(30, 20), mode=mode)
    a = imaging.load_image(path, in_chans)
    assert a.shape == (20, 30, in_chans) and a.dtype == np.uint8


def test_rgba_is_composited_on_white(tmp_path):
    path = tmp_path / "a.png"
    im = Image.new("RGBA", (20, 12), (255, 0, 0, 0))  # fully transparent red
    im.putpixel((0, 0), (255, 0, 0, 255))  # one opaque red pixel
    im.putpixel((1, 0), (0, 0, 0, 128))  # half-transparent black
    im.save(path)
    a = imaging.load_image(path, 3)
    assert a[5, 5].tolist() == [255, 255, 255]
    assert a[0, 0].tolist() == [255, 0, 0]
    assert a[0, 1].tolist() == [127, 127, 127]  # 255 * (1 - 128/255)


def test_la_and_palette_transparency_on_white(tmp_path):
    Image.new("LA", (20, 12), (0, 128)).save(tmp_path / "la.png")
    assert imaging.load_image(tmp_path / "la.png", 1)[0, 0].tolist() == [127]
    p = Image.new("P", (20, 12), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((3, 3), 1)
    p.save(tmp_path / "p.png", transparency=0)
    a = imaging.load_image(tmp_path / "p.png", 3)
    assert a[0, 0].tolist() == [255, 255, 255] and a[3, 3].tolist() == [255, 0, 0]


def test_cmyk_converts_to_rgb(tmp_path):
    Image.new("CMYK", (20, 12), (0, 255, 0, 0)).save(tmp_path / "c.tif")  # pure magenta ink
    assert imaging.load_image(tmp_path / "c.tif", 3)[0, 0].tolist() == [255, 0, 255]


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    a16 = np.array([[0, 257, 32768, 65535] * 3] * 10, dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    gray = imaging.load_image(tmp_path / "g16.png", 1)
    assert gray[0, :4, 0].tolist() == [0, 1, 128, 255]
    rgb = imaging.load_image(tmp_path / "g16.png", 3)
    assert rgb[0, 3].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("orientation", "shape"), [(1, (12, 30)), (3, (12, 30)), (6, (30, 12))])
def test_exif_orientation_is_applied(tmp_path, orientation, shape):
    im = Image.new("RGB", (30, 12), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 5, 5))  # red top-left corner
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "e.png", exif=exif)
    a = imaging.load_image(tmp_path / "e.png")
    assert a.shape[:2] == shape
    if orientation == 6:  # rotated 90 degrees clockwise: top-left moves to top-right
        assert a[0, -1].tolist() == [255, 0, 0] and a[0, 0].tolist() == [0, 0, 255]


def test_gif_first_frame_webp_tiff_bmp(tmp_path):
    frames = [Image.new("RGB", (20, 12), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert imaging.load_image(tmp_path / "a.gif")[0, 0].tolist() == [255, 0, 0]
    for ext in (".webp", ".tif", ".bmp"):
        write_image(tmp_path / f"x{ext}", size=(20, 12))
        assert imaging.load_image(tmp_path / f"x{ext}").shape == (12, 20, 3)


def test_broken_files_have_reasons(tmp_path):
    (tmp_path / "t.jpg").write_bytes(jpeg_bytes()[:300])
    assert reason_of(tmp_path / "t.jpg") == "truncated"
    (tmp_path / "t2.jpg").write_bytes(jpeg_bytes()[:-20])  # cut inside the scan data
    assert reason_of(tmp_path / "t2.jpg") == "truncated"
    assert reason_of(corrupt_png(tmp_path / "c.png")) == "corrupt"
    (tmp_path / "text.jpg").write_text("hello")
    assert reason_of(tmp_path / "text.jpg") == "unidentified"
    (tmp_path / "zero.jpg").write_bytes(b"")
    assert reason_of(tmp_path / "zero.jpg") == "empty_file"
    assert reason_of(write_image(tmp_path / "p.png", format="PPM")) == "unsupported_format"
    assert reason_of(write_image(tmp_path / "tiny.png", size=(30, 4))) == "too_small"


def test_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    def no_decoding(self):
        raise AssertionError("a bomb must never reach load()")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    path = bomb_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 2000
    assert reason_of(path) == "bomb"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bomb_between_one_and_two_times_the_limit(tmp_path, monkeypatch):
    # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; cnnlab treats it as a bomb too,
    # with or without the warnings filter (pytest resets filters per test).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    path = write_image(tmp_path / "x.png", size=(20, 20))
    assert reason_of(path) == "bomb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert reason_of(path) == "bomb"


def test_unreadable_files(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "fifo.jpg")  # opening it would block forever
    assert reason_of(tmp_path / "fifo.jpg") == "unreadable"
    os.symlink(tmp_path / "gone.jpg", tmp_path / "broken.jpg")
    assert reason_of(tmp_path / "broken.jpg") == "unreadable"
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    assert reason_of(tmp_path / "loop.jpg") == "symlink_loop"
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 10)
    assert reason_of(write_image(tmp_path / "big.png")) == "too_large"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_is_unreadable(tmp_path):
    path = write_image(tmp_path / "x.png")
    path.chmod(0)
    assert reason_of(path) == "unreadable"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a.jpg", None),
        ("a.JPEG", None),
        ("a.tif", None),
        ("a.webp", None),
        ("a.heic", "unsupported_format"),
        ("a.txt", "not_image"),
        ("README", "not_image"),
    ],
)
def test_extension_reason(name, reason):
    assert imaging.extension_reason(name) == reason


@pytest.mark.parametrize(
    ("w", "h", "short"), [(500, 375, 224), (375, 500, 224), (30, 30, 16), (17, 300, 256)]
)
def test_short_side_size_matches_torchvision(w, h, short):
    new_h, new_w = _compute_resized_output_size((h, w), size=[short])
    assert imaging.short_side_size(w, h, short) == (new_w, new_h)


def test_prepare_resizes_the_shorter_side(tmp_path):
    path = write_image(tmp_path / "x.jpg", size=(40, 20))
    assert imaging.prepare(path, 3, 10).shape == (10, 20, 3)
    assert imaging.prepare(path, 1, 30).shape == (30, 60, 1)  # upscaling too


def test_jpeg_draft_decodes_at_reduced_scale_and_still_catches_truncation(tmp_path):
    path = write_image(tmp_path / "big.jpg", size=(400, 300))
    assert imaging.decode(path, draft=60).size == (100, 75)  # 1/4 scale: still >= 60
    assert imaging.decode(path, draft=200).size == (400, 300)  # halving would go below 200
    assert imaging.prepare(path, 3, 60).shape == (60, 80, 3)
    path.write_bytes(path.read_bytes()[:-200])
    assert reason_of(path) == "truncated"
    with pytest.raises(ImageError, match="truncated"):
        imaging.decode(path, draft=60)


def test_resize_short_matches_torchvision_resize_on_the_full_image():
    a = np.ascontiguousarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8))
    out = imaging.resize_short(a, 20)
    full = F.resize(torch.from_numpy(a).permute(2, 0, 1).contiguous(), [20], antialias=True)
    assert out.shape == (20, 28, 3)
    np.testing.assert_array_equal(out, full.permute(1, 2, 0).numpy())
    assert imaging.resize_short(a, 20, "lanczos").shape == (20, 28, 3)
