"""summary.md: the short page a person reads after a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.evaluation.tta import describe
from cnnlab.fsio import write_text


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _skipped(data_lines: list[str]) -> str:
    """The data summary's 'skipped N files' line and its reasons, on one line ('' if none)."""
    for i, line in enumerate(data_lines):
        if line.startswith("skipped "):
            reasons = []
            for detail in data_lines[i + 1 :]:
                if not detail.startswith("  "):
                    break
                reasons.append(" ".join(detail.split()))
            return line.rstrip(":") + (": " + "; ".join(reasons) if reasons else "")
    return ""


def write_summary(
    run_dir: Path,
    *,
    name: str,
    config: dict[str, Any],
    status: dict[str, Any],
    history: list[dict[str, Any]],
    test: dict[str, Any] | None,
    classes: list[str],
    data_lines: list[str],
) -> Path:
    m, o, t = config["model"], config["optim"], config["train"]
    lines = [
        f"# Run `{name}`",
        "",
        f"- **status**: {status.get('status')} — {status.get('stop_reason', '')}",
        f"- **model**: {m['name']}{' (pretrained)' if m['pretrained'] else ''}, "
        f"{status.get('params', 0):,} parameters; {status.get('variant') or 'standard layout'}",
        f"- **data**: {'; '.join(line.removeprefix('data: ') for line in data_lines[:1])}",
        f"- **recipe**: {o['optimizer']} lr {o['lr']} (schedule {o['schedule']}), weight decay "
        f"{o['weight_decay']}, batch {config['data']['batch_size']}, {t['epochs']} epochs max, "
        f"seed {t['seed']}",
        f"- **device**: {status.get('device')} ({status.get('device_reason', '')})",
        f"- **best epoch**: {_epoch(status.get('best_epoch'))}, validation accuracy "
        f"{_pct(status.get('best_val_acc'))}; {status.get('epochs_run', 0)} epochs in "
        f"{status.get('wall_time_s', 0):.0f} s",
        f"- **training compute**: {_tflop(status.get('train_tflop'))} (forward + backward FLOPs "
        f"per image x images trained on; the same on every machine)",
    ]
    skipped = _skipped(data_lines)
    if skipped:
        lines.append(f"- **skipped**: {skipped}")
    if test:
        lines += [
            f"- **{test.get('split', 'test')} accuracy**: {_pct(test['accuracy'])} on "
            f"{test['samples']:,} images"
            + views_note(test)
            + "".join(f", {k} {_pct(v)}" for k, v in test.get("topk", {}).items())
            + f"; macro F1 {test['macro']['f1']:.4f}",
        ]
    lines += ["", "![curves](curves.png)", ""]
    if history:
        lines += ["| epoch | train loss | train acc | val loss | val acc | lr | time (s) |"]
        lines += ["|---:|---:|---:|---:|---:|---:|---:|"]
        for h in history:
            lines.append(
                f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_acc']:.4f} | "
                f"{h['val_loss']:.4f} | {h['val_acc']:.4f} | {h['lr']:.3g} | {h['epoch_time_s']:.1f} |"
            )
    if test:
        lines += ["", f"## Per class ({test.get('split', 'test')})", ""]
        lines += ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for c in classes:
            r = test["per_class"][c]
            lines.append(
                f"| {c} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
            )
        if test.get("most_confused"):
            pairs = ", ".join(
                f"{p['true']} → {p['predicted']} ({p['count']})" for p in test["most_confused"]
            )
            lines += ["", f"Most confused: {pairs}.", "", "![confusion](confusion_matrix.png)"]
    lines += _doctor_section(Path(run_dir))
    path = Path(run_dir) / "summary.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def _doctor_section(run_dir: Path) -> list[str]:
    """The doctor's findings (doctor.json) when it has run; it is summary.md's last section."""
    import json

    from cnnlab.doctor.run_end import summary_section

    try:
        doctor = json.loads((run_dir / "doctor.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return summary_section(doctor) if isinstance(doctor, dict) else []


def _tflop(t: float | None) -> str:
    return "–" if t is None or t != t else f"{t:.3g} TFLOP"


def _epoch(e: int | None) -> str:
    return "–" if e is None else str(e)


def views_note(report: dict[str, Any]) -> str:
    """ ", each averaged with its mirror image (--tta flip)" for a TTA report, else ""."""
    words = describe(report.get("tta"))
    return f", {words}" if words else ""
