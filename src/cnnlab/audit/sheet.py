"""The contact sheet: the worst findings as rows of images, copies side by side, each image
captioned with its split and path. matplotlib's object API only (Figure + FigureCanvasAgg): no
pyplot, no backend switch, nothing global changes."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnnlab.audit.findings import Code, Finding
from cnnlab.fsio import write_with

PER_ROW = 4
MAX_ROWS = 12
NO_PIXELS = {Code.CORRUPT_FILE, Code.SKIPPED_FILE, Code.CLASS_IMBALANCE}


def sheet_findings(findings: list[Finding], has_pixels: Callable[[str], bool]) -> list[Finding]:
    """The findings worth a row: in rank order, with at least one image to show."""
    rows = [
        f
        for f in findings
        if f.code not in NO_PIXELS and any(has_pixels(rel) for rel in f.files[:PER_ROW])
    ]
    return rows[:MAX_ROWS]


def write_sheet(
    findings: list[Finding], image: Callable[[str], np.ndarray | None], path: Path
) -> bool:
    """Draw up to MAX_ROWS findings into a PNG at `path`; False when nothing was drawable."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sheet_findings(findings, lambda rel: image(rel) is not None)
    if not rows:
        return False
    fig = Figure(figsize=(PER_ROW * 3.0, len(rows) * 3.4), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), PER_ROW, squeeze=False)
    for r, f in enumerate(rows):
        head = f"{f.severity.value} · {f.code.value}: {f.title}"
        axes[r, 0].text(
            0.0, 1.28, textwrap.shorten(head, 150), transform=axes[r, 0].transAxes,
            fontsize=9, fontweight="bold", va="bottom", ha="left",
        )  # fmt: skip
        for c in range(PER_ROW):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(f.files):
                continue
            a = image(f.files[c])
            if a is None:
                continue
            ax.imshow(_small(a), cmap="gray" if a.shape[2] == 1 else None, vmin=0, vmax=255)
            caption = f"{f.splits[c]} · {f.files[c]}" if f.splits[c] else f.files[c]
            ax.set_title("\n".join(textwrap.wrap(caption, 34)[:3]), fontsize=7)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.5 / len(rows), bottom=0.01,
                        hspace=0.75, wspace=0.05)  # fmt: skip
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def _small(a: np.ndarray, side: int = 200) -> np.ndarray:
    """At most `side` pixels on the longer side, by striding (a preview, not a resample)."""
    step = max(1, int(np.ceil(max(a.shape[:2]) / side)))
    s = a[::step, ::step]
    return s[:, :, 0] if s.shape[2] == 1 else s
