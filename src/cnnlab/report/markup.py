"""Small HTML builders for the report. Every value that comes from a run folder goes through
`esc`; builders take already-escaped HTML only where the parameter says `html`."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from typing import Any


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, *, cls: str = "", width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<img src="{data_uri(png)}" alt="{esc(alt)}"{klass}{size}>'


def section(anchor: str, title: str, body_html: str) -> str:
    return f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n{body_html}\n</section>'


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (),
    cls: str = "",
) -> str:  # fmt: skip
    """A table in its own horizontal scroller, so a wide one never widens the page. Cells are
    escaped; columns in `numeric` are right-aligned."""
    num = set(numeric)

    def cell(tag: str, i: int, v: Any) -> str:
        return f"<{tag}{' class=num' if i in num else ''}>{esc(v)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "\n".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<div class="scroll"><table{klass}><thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody></table></div>'


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{value_html(v)}</dd>" for k, v in pairs)
    return f'<dl class="kv">{rows}</dl>'


def value_html(value: Any, depth: int = 0) -> str:
    """Any JSON value, readable: dicts as key/value lists, short lists inline, the rest as JSON."""
    if isinstance(value, dict) and depth < 3:
        return key_values((str(k), v) for k, v in value.items()) if value else "–"
    if isinstance(value, list) and depth < 3:
        if all(not isinstance(v, (dict, list)) for v in value) and len(value) <= 20:
            return esc(", ".join(fmt(v) for v in value)) or "–"
        items = "".join(f"<li>{value_html(v, depth + 1)}</li>" for v in value[:50])
        more = f"<li>… {len(value) - 50} more</li>" if len(value) > 50 else ""
        return f"<ul>{items}{more}</ul>"
    if isinstance(value, (dict, list)):
        return f"<pre>{esc(json.dumps(value, indent=1, default=str))}</pre>"
    return esc(fmt(value))


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


CSS = """
:root { --fg: #1d232a; --muted: #5b6670; --line: #d8dde2; --bg: #fff; --soft: #f4f6f8;
  --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  overflow-wrap: anywhere; }
main { max-width: 1100px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.6em; margin: 0.2em 0; }
h2 { font-size: 1.25em; border-bottom: 1px solid var(--line); padding-bottom: 4px; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
nav a { margin-right: 0.9em; white-space: nowrap; color: var(--accent); }
.muted { color: var(--muted); }
.headline { font-size: 1.15em; }
.headline strong { font-size: 1.5em; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 0.85em;
  font-weight: 600; color: #fff; background: var(--muted); }
.st-finished, .sev-info { background: var(--ok); }
.st-interrupted, .st-running, .st-preparing, .sev-warning { background: var(--warn); }
.st-diverged, .st-failed, .sev-error { background: var(--bad); }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.5em 0; }
table { border-collapse: collapse; font-size: 0.92em; overflow-wrap: normal; }
th { white-space: nowrap; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.cm td, table.cm th { text-align: center; min-width: 2.6em; }
table.cm th.row { text-align: right; }
dl.kv { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 2px 14px; margin: 0.4em 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; min-width: 0; }
pre { background: var(--soft); padding: 10px; overflow-x: auto; font-size: 0.85em; max-width: 100%; }
code { background: var(--soft); padding: 0 3px; }
img { max-width: 100%; height: auto; }
.figure { margin: 0.6em 0; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 12px; }
.mistake { border: 1px solid var(--line); border-radius: 6px; padding: 8px; margin: 0; }
.mistake .pair { display: flex; gap: 6px; }
.mistake .pair img { width: 50%; image-rendering: pixelated; }
.mistake figcaption { font-size: 0.88em; margin-top: 4px; }
.finding { border-left: 4px solid var(--line); padding: 2px 10px; margin: 10px 0; }
.finding.sev-error { border-left-color: var(--bad); background: none; }
.finding.sev-warning { border-left-color: var(--warn); background: none; }
.finding.sev-info { border-left-color: var(--ok); background: none; }
.note { background: #fff8c5; padding: 6px 10px; border-radius: 4px; }
footer { margin: 2.5em 0 1em; color: var(--muted); font-size: 0.85em; }
@media (max-width: 600px) { body { font-size: 14px; } main { padding: 10px; }
  dl.kv { grid-template-columns: minmax(0, 1fr); } dl.kv dt { margin-top: 4px; } }
"""
