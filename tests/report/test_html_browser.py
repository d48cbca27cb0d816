"""report.html in a real browser: Debian's Chromium, driven by Playwright (never a downloaded
browser). Deselect with `-m "not browser"` for quick local runs; when Chromium is missing the
test fails and says how to install it, it does not skip.

`CNNLAB_UPDATE_SCREENSHOT=1` also rewrites docs/report.png, the README's screenshot.
"""

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "report.png"
GALLERY = 12  # write_report's default bound


@pytest.fixture(scope="module")
def browser():
    if not (os.path.isfile(CHROMIUM) or shutil.which("chromium")):
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM} is missing); the report's browser test "
            "needs it: `sudo apt-get install -y chromium` (Debian/Ubuntu), or deselect the test "
            'with -m "not browser"'
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the browser test needs Playwright: `pip install -e '.[dev]'` (or `pip install playwright`)"
        )
    with sync_playwright() as p:
        exe = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
        b = p.chromium.launch(executable_path=exe, args=ARGS, headless=True)
        yield b
        b.close()


def _open(browser, report, width, height):
    page = browser.new_page(viewport={"width": width, "height": height})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "request",
        lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(r.url),
    )
    page.goto(report.as_uri(), wait_until="load")
    return page, problems


def test_the_report_in_chromium(browser, report, trained_run, tmp_path):
    test = json.loads((trained_run / "test.json").read_text())
    cm = np.array(test["confusion_matrix"])
    wrong = int(cm.sum() - np.trace(cm))

    page, problems = _open(browser, report, 1280, 900)
    assert problems == []  # no console errors, no script errors, no network request
    assert page.evaluate("document.scripts.length") == 0
    images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.alt])")
    assert len(images) == 1 + 2 * min(GALLERY, wrong)  # the curves, then two per mistake
    assert all(done and width > 0 for done, width, _ in images), images
    headline = page.locator("#headline-accuracy")
    assert headline.inner_text() == f"{100 * test['accuracy']:.2f}%"
    assert float(headline.get_attribute("data-value")) == test["accuracy"]
    assert page.locator("#mistakes figure.mistake").count() == min(GALLERY, wrong)
    page.screenshot(path=str(tmp_path / "report-desktop.png"), full_page=True)
    _readme_screenshot(page)

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.reload(wait_until="load")
    widths = page.evaluate(
        "[document.body.scrollWidth, document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert widths[0] <= widths[2] and widths[1] <= widths[2], widths
    page.screenshot(path=str(tmp_path / "report-phone.png"), full_page=True)
    assert problems == []
    print(f"screenshots: {tmp_path}")


def _readme_screenshot(page):
    """docs/report.png: the top of the page and the gallery, small enough to commit."""
    from PIL import Image

    if os.environ.get("CNNLAB_UPDATE_SCREENSHOT") == "1":

        def shot(y, height):
            clip = {"x": 0, "y": y, "width": 1280, "height": height}
            return Image.open(io.BytesIO(page.screenshot(clip=clip, full_page=True)))

        top = shot(0, page.locator("#data").bounding_box()["y"] - 8)  # header and status
        box = page.locator("#mistakes").bounding_box()
        gallery = shot(box["y"], min(box["height"], 820))
        sheet = Image.new("RGB", (1280, top.height + gallery.height), "white")
        sheet.paste(top, (0, 0))
        sheet.paste(gallery, (0, top.height))
        sheet = sheet.resize((960, sheet.height * 960 // 1280), Image.Resampling.LANCZOS)
        sheet.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(DOCS_PNG, optimize=True)
    assert DOCS_PNG.is_file(), (
        f"{DOCS_PNG} is missing: run this test with CNNLAB_UPDATE_SCREENSHOT=1"
    )
    assert DOCS_PNG.stat().st_size < 200_000
    with Image.open(DOCS_PNG) as im:
        assert im.format == "PNG" and im.width >= 800
