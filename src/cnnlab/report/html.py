"""report.html: one self-contained page a person reads top to bottom after a run.

    from cnnlab.report import write_report
    write_report("runs/demo")  # -> runs/demo/report.html

Status and why it stopped, data, model, configuration, curves, test metrics with the per-class
table and confusion matrix, the most confused pairs, a gallery of the most confident mistakes
with Grad-CAM overlays, doctor/audit findings when present, environment. Pictures are inlined as
data: URIs and the CSS is inline: no script, no network, so the file opens from disk or as a
mail attachment. Everything read from the run folder is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.explain.gradcam import CamMethod, cam_method
from cnnlab.fsio import write_text
from cnnlab.report import sections as S
from cnnlab.report.markup import CSS, esc
from cnnlab.report.mistakes import Gallery
from cnnlab.report.run_folder import RunFolder, read_run_folder

REPORT = "report.html"


def write_report(
    run_dir: str | Path,
    *,
    mistakes: int = 12,
    method: str | CamMethod = CamMethod.GRADCAM,
    runs_dir: str | Path | None = None,
    bundle: Any = None,
) -> Path:
    """Write RUN/report.html and return its path. `mistakes` bounds the gallery; `bundle` is
    the run's data when the caller already has it (the end of training)."""
    from cnnlab import runs

    method = cam_method(method)
    run = read_run_folder(runs.resolve_run(run_dir, runs_dir))
    model, model_note = _load_model(run)
    flops = _flops(run, model)
    body = [S.status(run), S.data(run, _layout(run)), S.model(run, flops, _weights(run))]
    body += [S.config(run), S.curves(_curves(run))]
    if run.test:
        body += [S.metrics(run.test, run.classes), S.confused(run.test)]
        gallery = _gallery(run, model, model_note, mistakes, method, bundle)
        body.append(S.mistakes(gallery.items, gallery.note, method.label))
    reports = {name: rep for name, rep in (("doctor", run.doctor), ("audit", run.audit)) if rep}
    if reports:
        body.append(S.findings(reports))
    if run.environment:
        body.append(S.environment(run.environment))
    anchors = [a for a, _ in S.SECTIONS if f'<section id="{a}">' in "".join(body)]
    page = _page(run, S.header(run, anchors), body)
    path = run.path / REPORT
    write_text(path, page)
    return path


def _page(run: RunFolder, header: str, body: list[str]) -> str:
    import cnnlab

    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    footer = f"<footer>cnnlab {esc(cnnlab.__version__)} · written {esc(stamp)} from {esc(run.path)}</footer>"
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>cnnlab run {esc(run.name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        + header + "\n" + "\n".join(body) + "\n" + footer + "\n</main>\n</body>\n</html>\n"
    )  # fmt: skip


def _load_model(run: RunFolder) -> tuple[Any, str]:
    from cnnlab.export import load_exported

    if run.model_meta is None:
        return None, "No exported model (model.json) in the run: no epoch has finished."
    try:
        model, _ = load_exported(run.path)
    except CnnlabError as e:
        return None, f"The exported model cannot be loaded: {e}"
    return model, ""


def _layout(run: RunFolder) -> str | None:
    from cnnlab.data.split import detect_layout

    d = (run.config or {}).get("data", {})
    if d.get("dataset") == "fashion-mnist":
        return "built-in Fashion-MNIST (IDX files)"
    recorded = (run.status or {}).get("data", {}).get("layout")
    if recorded:  # what the run saw, even when the data has moved since
        return recorded
    if not d.get("path"):
        return None
    try:
        return detect_layout(Path(d["path"]))
    except CnnlabError:
        return f"unknown: {d['path']} is not readable from here"


def _flops(run: RunFolder, model: Any) -> int | None:
    """FLOPs of one image at the run's input size, counted on a model built on the meta device
    (no weights allocated), or on the loaded model when a builder cannot run on meta."""
    from cnnlab.models.catalog import build_for_counting
    from cnnlab.models.summary import count_flops

    meta = run.model_meta or {}
    build = dict(meta.get("architecture") or {})
    size = (meta.get("preprocess") or {}).get("input_size")
    if not build or not size:
        return None
    try:
        net = build_for_counting(build["name"], build["num_classes"], size[1], size[0])
        return count_flops(net, tuple(size))
    except (CnnlabError, RuntimeError, NotImplementedError, TypeError, KeyError):
        return None if model is None else count_flops(model, tuple(size))


def _weights(run: RunFolder) -> str:
    from cnnlab.models import get_model_info

    m = (run.config or {}).get("model", {})
    if m.get("weights"):
        return f"from the file {m['weights']}"
    if not m.get("pretrained"):
        return "none: trained from scratch"
    try:
        spec = get_model_info(m["name"]).weights
    except CnnlabError:
        spec = None
    if spec is None:
        return "pretrained"
    top1 = f", ImageNet top-1 {spec.top1}%" if spec.top1 else ""
    return f"{spec.tag}: {spec.source} (licence {spec.license}{top1})"


def _curves(run: RunFolder) -> bytes | None:
    from cnnlab.report.figures import curves_png

    if not run.history:
        return None
    schedule = (run.config or {}).get("optim", {}).get("schedule")
    return curves_png(
        run.history,
        best_epoch=run.status.get("best_epoch"),
        mark_lr_drops=schedule in ("plateau", "step"),
    )


def _gallery(
    run: RunFolder, model: Any, note: str, n: int, method: CamMethod, bundle: Any = None
) -> Gallery:
    from cnnlab.report.mistakes import mistake_gallery, predict_split

    test = run.test or {}
    split = test.get("split", "test")
    if model is None:
        return Gallery([], note)
    try:
        preds = predict_split(run.path, model, split, bundle=bundle)
    except CnnlabError as e:
        return Gallery(
            [], f"The gallery needs the {split} images, which cannot be loaded here: {e}"
        )
    wrong = int((preds.probs.argmax(1) != preds.targets).sum())
    items = mistake_gallery(model, preds, run.classes, n, method)
    note = (
        f"The {len(items)} most confident of the {wrong:,} wrong predictions on the {split} "
        f"split, by the best model. Beside each image: the {method.label} heatmap of the "
        "predicted class (red: the pixels that drove the prediction)."
    )
    if test.get("tta", "none") != "none":  # test.json averaged views; the gallery has one each
        note += f" ({split}.json was evaluated with --tta {test['tta']}; these are single views.)"
    elif "accuracy" in test and abs(preds.accuracy - float(test["accuracy"])) > 1e-9:
        note += (
            f" Note: predicting the split again gives accuracy {preds.accuracy:.4f}, "
            f"not {float(test['accuracy']):.4f} as in {split}.json; the data may have changed."
        )
    return Gallery(items, note)
