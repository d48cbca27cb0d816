"""One function per section of report.html, top to bottom as a person reads it. Each takes
what it shows and returns escaped HTML; none reads files."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from cnnlab.evaluation.report import views_note
from cnnlab.report.markup import esc, fmt, img, key_values, pct, section, table, value_html
from cnnlab.report.mistakes import Mistake
from cnnlab.report.run_folder import RunFolder
from cnnlab.runs import RunStatus

SECTIONS = (  # anchor, title: the table of contents
    ("status", "Status"), ("data", "Data"), ("model", "Model"), ("config", "Configuration"),
    ("curves", "Curves"), ("metrics", "Test metrics"), ("confused", "Most confused"),
    ("mistakes", "Confident mistakes"), ("findings", "Findings"), ("environment", "Environment"),
)  # fmt: skip
STATES = {str(s) for s in RunStatus}


def _epoch(e: Any) -> str:
    return "–" if e is None else str(int(e))  # counted from 1, as people count


def header(run: RunFolder, anchors: list[str]) -> str:
    s = run.status
    state = s.get("status", "unknown")
    klass = f"st-{state}" if state in STATES else ""
    why = s.get("stop_reason") or s.get("error") or ""
    parts = [f"<h1>Run {esc(run.name)}</h1>"]
    parts.append(f'<p><span class="badge {klass}">{esc(state)}</span> {esc(why)}</p>')
    if run.test and "accuracy" in run.test:
        t = run.test
        split = t.get("split", "test")
        acc = float(t["accuracy"])
        macro = t.get("macro", {}).get("f1")
        parts.append(
            f'<p class="headline">{esc(split)} accuracy <strong id="headline-accuracy" '
            f'data-value="{acc!r}">{pct(acc)}</strong> on {fmt(t.get("samples"))} images'
            + esc(views_note(t))
            + (f" · macro F1 {macro:.4f}" if macro is not None else "")
            + f" · best epoch {_epoch(s.get('best_epoch'))}</p>"
        )
    else:
        parts.append('<p class="headline muted">not evaluated yet: no test.json in the run</p>')
    links = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in SECTIONS if a in anchors)
    parts.append(f"<nav>{links}</nav>")
    notes = "".join(f'<p class="note">{esc(p)}</p>' for p in run.problems)
    return "<header>" + "\n".join(parts) + notes + "</header>"


def status(run: RunFolder) -> str:
    s = run.status
    pairs = [
        ("status", s.get("status")),
        ("why it stopped", s.get("stop_reason") or s.get("error")),
        ("epochs run", s.get("epochs_run")),
        ("best epoch", _epoch(s.get("best_epoch"))),
        ("best validation accuracy", pct(s.get("best_val_acc"))),
        ("wall time", None if s.get("wall_time_s") is None else f"{s['wall_time_s']:.0f} s"),
        ("device", " — ".join(str(v) for v in (s.get("device"), s.get("device_reason")) if v)),
        ("started", s.get("started")),
        ("finished", s.get("finished") or s.get("updated")),
    ]
    if s.get("resumed_from"):
        pairs.append(("resumed from", s["resumed_from"]))
    if run.divergence:
        pairs.append(("divergence", run.divergence.get("message")))
    return section("status", "Status", key_values((k, v) for k, v in pairs if v not in (None, "")))


def data(run: RunFolder, layout: str | None) -> str:
    cfg = (run.config or {}).get("data", {})
    source = cfg.get("path") or (run.test or {}).get("data") or cfg.get("dataset")
    facts = [("data set", cfg.get("dataset")), ("source", source), ("layout", layout)]
    facts += [("subset", cfg.get("subset")), ("validation fraction", cfg.get("val_fraction"))]
    parts = [key_values((k, v) for k, v in facts if v is not None)]
    if run.class_counts and run.classes:
        splits = list(run.class_counts)
        rows = [[c, *(run.class_counts[s][k] for s in splits)] for k, c in enumerate(run.classes)]
        rows.append(["total", *(sum(run.class_counts[s]) for s in splits)])
        parts.append("<h3>Images per class and split</h3>")
        parts.append(table(["class", *splits], rows, numeric=range(1, len(splits) + 1)))
    parts.append(_skipped(run.skipped))
    return section("data", "Data", "\n".join(parts))


def _skipped(rows: list[dict[str, str]] | None, limit: int = 100) -> str:
    if rows is None:
        return ""
    if not rows:
        return "<p>No file was skipped.</p>"
    from cnnlab.data.imaging import REASONS

    by_reason = Counter(r.get("reason", "") for r in rows)
    summary = table(
        ["reason", "files", "meaning"],
        [[r, n, REASONS.get(r, "")] for r, n in by_reason.most_common()],
        numeric=[1],
    )
    shown = [[r.get("path"), r.get("reason"), r.get("detail")] for r in rows[:limit]]
    more = (
        f"<p class=muted>… and {len(rows) - limit} more in skipped.csv</p>"
        if len(rows) > limit
        else ""
    )
    return (
        f"<h3>Skipped files ({len(rows):,})</h3>{summary}"
        f"<details><summary>every skipped file</summary>{table(['path', 'reason', 'detail'], shown)}{more}</details>"
    )


def model(run: RunFolder, flops: int | None, weights: str) -> str:
    meta = run.model_meta or {}
    arch = meta.get("architecture") or run.status.get("build") or {}
    pre = meta.get("preprocess") or {}
    facts = [
        ("name", arch.get("name") or (run.config or {}).get("model", {}).get("name")),
        ("variant", meta.get("variant") or run.status.get("variant") or "standard layout"),
        ("parameters", run.status.get("params")),
        ("FLOPs per image", None if flops is None else f"{flops / 1e6:,.1f} M ({flops / 2e6:,.1f} M MACs)"),
        ("pretrained weights", weights),
        ("classes", len(meta.get("classes") or run.classes) or None),
        ("input", "×".join(str(v) for v in pre.get("input_size", [])) or None),
        ("normalisation", f"mean {pre.get('mean')}, std {pre.get('std')}" if pre else None),
        ("resize", f"{pre.get('interpolation')}, crop {pre.get('crop_pct')}" if pre else None),
        ("exported weights", None if meta.get("epoch") is None else f"epoch {_epoch(meta['epoch'])}"),
        ("sha256", meta.get("sha256")),
    ]  # fmt: skip
    return section("model", "Model", key_values((k, v) for k, v in facts if v is not None))


def config(run: RunFolder) -> str:
    body = f"<pre>{esc(run.config_text)}</pre>" if run.config_text else "<p>No config.yaml.</p>"
    return section("config", "Configuration (config.yaml)", body)


def curves(png: bytes | None) -> str:
    if png is None:
        return section("curves", "Curves", "<p>No epoch has finished: no metrics.csv yet.</p>")
    alt = "loss, accuracy and learning rate per epoch"
    return section("curves", "Curves", f'<div class="figure">{img(png, alt)}</div>')


def metrics(test: dict[str, Any], classes: list[str]) -> str:
    facts = [("images", test.get("samples")), ("accuracy", pct(test.get("accuracy")))]
    facts += [(k, pct(v)) for k, v in (test.get("topk") or {}).items()]
    facts += [("loss", test.get("loss"))]
    facts += [(f"macro {k}", v) for k, v in (test.get("macro") or {}).items()]
    if test.get("majority_class_rate") is not None:  # what "always the largest class" scores
        facts.append(("majority-class baseline", pct(test["majority_class_rate"])))
    if b := test.get("binary"):
        facts.append((
            f"positive class {b.get('positive_class')}",
            f"precision {b['precision']:.3f}, recall {b['recall']:.3f}, F1 {b['f1']:.3f}, "
            f"ROC AUC {fmt(b.get('auc'))}",
        ))  # fmt: skip
    parts = [key_values(facts)]
    per = test.get("per_class") or {}
    names = [c for c in classes if c in per] or list(per)
    rows = [
        [c, f"{per[c]['precision']:.3f}", f"{per[c]['recall']:.3f}", f"{per[c]['f1']:.3f}",
         per[c]["support"]]
        for c in names
    ]  # fmt: skip
    parts.append("<h3>Per class</h3>")
    parts.append(
        table(["class", "precision", "recall", "F1", "support"], rows, numeric=[1, 2, 3, 4])
    )
    if test.get("confusion_matrix") is not None:
        parts.append("<h3>Confusion matrix</h3><p class=muted>rows: true class; columns: predicted; "
                     "shade: share of the true class</p>")  # fmt: skip
        parts.append(confusion_table(np.asarray(test["confusion_matrix"]), names))
    split = test.get("split", "test")
    return section("metrics", f"{split.capitalize()} metrics", "\n".join(parts))


def confusion_table(cm: np.ndarray, classes: list[str]) -> str:
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    head = "".join(f"<th>{esc(c)}</th>" for c in classes)
    rows = []
    for i, name in enumerate(classes):
        cells = []
        for j in range(len(classes)):
            r = float(rates[i, j])
            color = "#fff" if r > 0.5 else "inherit"
            style = f"background: rgba(11, 92, 173, {r:.3f}); color: {color}"
            cells.append(f'<td style="{style}">{int(cm[i, j])}</td>')
        rows.append(f'<tr><th class="row">{esc(name)}</th>{"".join(cells)}</tr>')
    return (
        '<div class="scroll"><table class="cm"><thead><tr><th>true \\ predicted</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def confused(test: dict[str, Any]) -> str:
    pairs = test.get("most_confused") or []
    if not pairs:
        return section("confused", "Most confused pairs", "<p>No confusions.</p>")
    support = {c: r.get("support") for c, r in (test.get("per_class") or {}).items()}
    rows = [
        [p["true"], p["predicted"], p["count"], pct(p["count"] / support[p["true"]], 1)
         if support.get(p["true"]) else "–"]
        for p in pairs
    ]  # fmt: skip
    body = table(
        ["true", "predicted as", "images", "share of the true class"], rows, numeric=[2, 3]
    )
    return section("confused", "Most confused pairs", body)


def mistakes(items: list[Mistake], note: str, method_label: str) -> str:
    intro = f"<p>{esc(note)}</p>" if note else ""
    if not items:
        return section("mistakes", "Most confident mistakes", intro)
    cards = []
    for m in items:
        what = f"true {m.true}, predicted {m.predicted}"
        cards.append(
            '<figure class="mistake"><div class="pair">'
            f"{img(m.image_png, what)}{img(m.cam_png, f'{method_label} for {m.predicted}')}</div>"
            f"<figcaption>predicted <b>{esc(m.predicted)}</b> {pct(m.prob, 1)} · true <b>{esc(m.true)}</b> "
            f"{pct(m.true_prob, 1)}<br><span class=muted>{esc(m.source)}</span></figcaption></figure>"
        )
    return section(
        "mistakes",
        "Most confident mistakes",
        intro + f'<div class="gallery">{"".join(cards)}</div>',
    )


def findings(reports: dict[str, dict[str, Any]]) -> str:
    """doctor.json / audit.json, rendered from their shape alone: a list of findings with code,
    severity, title, evidence and fix (nested `symptoms` under their cause), other keys as data."""
    parts = []
    for name, rep in reports.items():
        items = rep.get("findings") if isinstance(rep, dict) else None
        parts.append(f"<h3>{esc(name)}</h3>")
        if isinstance(items, list):
            parts.append("".join(_finding(f) for f in items) or "<p>No findings.</p>")
            rest = {k: v for k, v in rep.items() if k != "findings"}
        else:
            rest = rep
        if rest:
            parts.append(f"<details><summary>details</summary>{value_html(rest)}</details>")
    return section("findings", "Findings", "\n".join(parts))


def _finding(f: Any, depth: int = 0) -> str:
    if not isinstance(f, dict):
        return f'<div class="finding">{value_html(f)}</div>'
    sev = str(f.get("severity", ""))
    klass = f"sev-{sev}" if sev in ("error", "warning", "info") else ""
    head = (
        f'<p><span class="badge {klass}">{esc(sev or "finding")}</span> <code>{esc(f.get("code"))}</code> '
        f"<b>{esc(f.get('title'))}</b></p>"
    )
    known = ("code", "severity", "title", "evidence", "fix", "symptoms")
    body = []
    if f.get("evidence") not in (None, "", {}):
        body.append(("evidence", f["evidence"]))
    if f.get("fix"):
        body.append(("fix", f["fix"]))
    body += [(k, v) for k, v in f.items() if k not in known]
    nested = f.get("symptoms") if depth < 2 and isinstance(f.get("symptoms"), list) else []
    inner = "".join(_finding(s, depth + 1) for s in nested)
    return f'<div class="finding {klass}">{head}{key_values(body)}{inner}</div>'


def environment(env: dict[str, Any]) -> str:
    return section("environment", "Environment", key_values(env.items()))
