import numpy as np
import pytest
from audittree import photo
from PIL import Image

from cnnlab.audit import properties as P
from cnnlab.audit.findings import Code, Severity
from cnnlab.audit.hashing import gray


def stats(a):
    return dict(zip(P.STATS, P.pixel_stats(a, gray(a)), strict=True))


def test_pixel_stats_of_known_images():
    const = np.full((20, 30, 3), 51, dtype=np.uint8)  # 20% grey
    s = stats(const)
    assert s["p05"] == pytest.approx(0.2) and s["p95"] == pytest.approx(0.2)
    assert s["mean"] == pytest.approx(0.2)
    assert s["entropy"] == 0.0 and s["flat"] == 1.0
    assert np.isnan(s["sharpness"])  # nothing to be sharp or blurry
    assert s["gray_rgb"] == 0.0
    half = np.zeros((20, 30, 3), dtype=np.uint8)
    half[:, 15:] = 255
    s = stats(half)
    assert s["entropy"] == pytest.approx(1.0) and s["flat"] == pytest.approx(0.5)
    assert s["p05"] == 0.0 and s["p95"] == 1.0 and s["sharpness"] > 0
    colour = photo(1)
    assert stats(colour)["gray_rgb"] > 20


def test_blur_lowers_sharpness():
    from PIL import ImageFilter

    a = photo(3, size=(128, 96))
    b = np.array(Image.fromarray(a).filter(ImageFilter.GaussianBlur(3)))
    assert stats(b)["sharpness"] < 0.3 * stats(a)["sharpness"]


def test_headers_of_unusual_files(tmp_path):
    Image.fromarray(photo(1)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(photo(2)).convert("P").save(tmp_path / "pal.png")
    Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)).save(
        tmp_path / "deep.png"
    )
    im = Image.fromarray(photo(3))  # 160 x 120 stored, displayed 120 x 160 after orientation 6
    exif = Image.Exif()
    exif[P.EXIF_ORIENTATION] = 6
    im.save(tmp_path / "rot.jpg", exif=exif)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    h = {p.stem: P.read_header(p) for p in sorted(tmp_path.iterdir())}
    assert h["cmyk"].mode == "CMYK" and h["pal"].mode == "P"
    assert h["deep"].mode.startswith("I")
    assert (h["rot"].orientation, h["rot"].width, h["rot"].height) == (6, 120, 160)
    assert h["junk"] is None


def test_property_findings_flag_the_right_files():
    imgs = [photo(i, size=(128, 96)) for i in range(8)]
    imgs[1] = imgs[1] // 14  # dark
    imgs[2] = np.full_like(imgs[2], 250)  # light and flat
    imgs[3] = np.array(Image.fromarray(imgs[3]).convert("L").convert("RGB"))  # grayscale
    st = np.stack([P.pixel_stats(a, gray(a)) for a in imgs])
    headers = [P.Header("JPEG", "RGB", 128, 96, 1) for _ in imgs]
    headers[4] = P.Header("PNG", "P", 20, 16, 1)  # palette, tiny and odd-sized
    headers[5] = P.Header("JPEG", "RGB", 400, 96, 8)  # elongated, rotated
    rels = [f"c/{i}.jpg" for i in range(8)]
    out = {f.code: f for f in P.property_findings(st, headers, rels, ["train"] * 8, P.Thresholds())}
    assert out[Code.DARK].files == ("c/1.jpg",)
    assert out[Code.LIGHT].files == ("c/2.jpg",)
    assert out[Code.LOW_INFORMATION].files == ("c/2.jpg",)
    assert set(out[Code.GRAYSCALE_AS_RGB].files) == {"c/2.jpg", "c/3.jpg"}
    assert out[Code.UNUSUAL_MODE].files == ("c/4.jpg",)
    assert out[Code.TINY].files == ("c/4.jpg",) and out[Code.ODD_SIZE].files == ("c/4.jpg",)
    assert out[Code.ODD_ASPECT_RATIO].files == ("c/5.jpg",)
    assert out[Code.EXIF_ROTATED].evidence["values"] == {"c/5.jpg": 8}
    assert out[Code.DARK].evidence["threshold"] == "< 0.2"
    assert all(f.severity is Severity.INFO for f in out.values())


def test_a_property_of_most_images_is_one_data_set_finding():
    imgs = [photo(i) // 14 for i in range(5)] + [photo(9)]
    st = np.stack([P.pixel_stats(a, gray(a)) for a in imgs])
    (dark,) = [
        f
        for f in P.property_findings(
            st, None, [str(i) for i in range(6)], ["t"] * 6, P.Thresholds()
        )
        if f.code is Code.DARK
    ]
    assert "83% of the images" in dark.title and dark.score == 0.0
