"""Results: what each run left behind -> results.csv, results.md and results.png."""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.experiment.plan import PATH_KEYS, Experiment, RunSpec
from cnnlab.fsio import read_json, write_text
from cnnlab.runs import RunStatus, read_history, try_read_status


@dataclass
class ExperimentResult:
    name: str
    folder: Path
    rows: list[dict[str, Any]]  # one per run, the rows of results.csv
    markdown: str  # results.md's grouped table

    @property
    def finished(self) -> int:
        return sum(r["status"] is RunStatus.FINISHED for r in self.rows)

    def summary(self) -> str:
        failed = len(self.rows) - self.finished
        kinds = [str(r["status"]) for r in self.rows if r["status"] is not RunStatus.FINISHED]
        words = {"failed": "error"}  # "2 failed (1 diverged, 1 error)", not "1 failed" twice
        detail = ", ".join(f"{kinds.count(k)} {words.get(k, k)}" for k in dict.fromkeys(kinds))
        line = f"{self.finished} finished, {failed} failed" + (f" ({detail})" if detail else "")
        if RunStatus.FAILED in kinds or RunStatus.DIVERGED in kinds:
            line += "; retrain those with --rerun-failed"
        return line


def diagnose(status: dict[str, Any], test: dict[str, Any] | None) -> str:
    """A flag for runs whose number hides a broken model (USERS.md: "predicts one class")."""
    if _state(status) is RunStatus.DIVERGED:
        return "diverged"
    if not test:
        return ""
    loss = test.get("loss")
    if loss is not None and not math.isfinite(loss):
        # training loss stayed finite but the weights blew up: the accuracy is meaningless
        return "non-finite test loss"
    histogram = test.get("predicted_class_histogram") or []
    if sum(1 for count in histogram if count) == 1:
        return "predicts one class"
    accuracy, majority = test.get("accuracy"), test.get("majority_class_rate")
    if accuracy is not None and majority is not None and accuracy <= majority + 0.01:
        return "no better than the majority class"
    return ""


def doctor_diagnosis(run_dir: Path, status: dict[str, Any], test: dict[str, Any] | None) -> str:
    """The doctor's top finding (doctor.json's `diagnosis`: a code such as lr_too_high, ''
    for a run without warning or error); `diagnose` for runs the doctor has not seen."""
    doctor = _read_optional(run_dir / "doctor.json")
    if isinstance(doctor, dict) and "findings" in doctor:
        return doctor.get("diagnosis") or ""
    return diagnose(status, test)


def _state(status: dict[str, Any]) -> RunStatus | None:
    """run.json's status as the enum (records built by hand carry plain strings)."""
    return RunStatus(status["status"]) if status.get("status") else None


def stop_kind(status: dict[str, Any]) -> str:
    """The short why-it-stopped of the table: early stop, max epochs, diverged, failed, ..."""
    state = _state(status)
    if state is not RunStatus.FINISHED:
        return str(state or "not run")
    reason = status.get("stop_reason") or ""
    return "early stop" if reason.startswith("early stop") else reason or "finished"


def run_row(spec: RunSpec, run_dir: Path, keys: list[str] | None = None) -> dict[str, Any]:
    status = try_read_status(run_dir)
    history = read_history(run_dir)
    test = val = None
    if status.get("status") is RunStatus.FINISHED:
        # data without a test split gets val.json instead: good for the diagnosis, but its
        # accuracy chose the best epoch, so it is never shown as a test accuracy
        test = _read_optional(run_dir / "test.json")
        val = None if test else _read_optional(run_dir / "val.json")
    best_val = status.get("best_val_acc")
    if best_val is None and history:
        best_val = max(h["val_acc"] for h in history)
    best_val = None if best_val is None else round(best_val, 6)  # float32 noise off the CSV
    best_epoch = status.get("best_epoch")
    # the epochs' own times (train + validation) add up across resumes; run.json's wall time
    # covers only the last session of a resumed run
    times = [h["epoch_time_s"] for h in history if "epoch_time_s" in h]
    wall = round(sum(times), 1) if times else status.get("wall_time_s")
    epochs = status.get("epochs_run", len(history) if history else None)
    row: dict[str, Any] = {"name": spec.name}
    # every varied key of the experiment, also those this run left at the base's value
    for key in keys if keys is not None else spec.settings:
        section, leaf = key.split(".")
        row[key] = getattr(getattr(spec.config, section), leaf)
    row.update(
        seed=spec.seed, status=status.get("status") or "not run", stopped=stop_kind(status),
        stop_reason=status.get("stop_reason") or "", best_val_acc=best_val,
        best_epoch=best_epoch,
        epochs_run=epochs, test_acc=None if test is None else test.get("accuracy"),
        wall_time_s=wall, s_per_epoch=round(wall / epochs, 2) if wall and epochs else None,
        params=status.get("params"), diagnosis=doctor_diagnosis(run_dir, status, test or val),
        error=status.get("error") or "",
    )  # fmt: skip
    return row


def _read_optional(path: Path) -> dict[str, Any] | None:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def write_results(exp: Experiment, folder: Path) -> ExperimentResult:
    """results.csv (one row per run), results.md (seeds grouped) and results.png."""
    rows = [run_row(spec, folder / spec.name, exp.keys) for spec in exp.runs]
    columns = ["name", *exp.keys, *[k for k in rows[0] if k not in exp.keys and k != "name"]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if r.get(k) is None else r.get(k) for k in columns} for r in rows)
    write_text(folder / "results.csv", buf.getvalue())
    groups = _groups(exp, rows)
    table = markdown_table(exp, groups)
    failures = [f"- `{r['name']}`: {r['error']}" for r in rows if r["error"]]
    text = [f"# Experiment {exp.name}", "", f"From `{exp.source}`; {len(rows)} runs.", "", table]
    text += ["", "Failed runs (retrain with `--rerun-failed`):", "", *failures] if failures else []
    write_text(folder / "results.md", "\n".join(text) + "\n")
    plot_results(exp, folder, groups, folder / "results.png")
    return ExperimentResult(exp.name, folder, rows, table)


def _groups(exp: Experiment, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec, row in zip(exp.runs, rows, strict=True):
        groups.setdefault(spec.label, []).append(row)
    return groups


def mean_std(values: list[float], scale: float = 100.0) -> str:
    """'85.20 ± 1.31' (sample std over seeds), or '85.20' for one value, '–' for none."""
    if not values:
        return "–"
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values) * scale:.2f}"


def _span(values: list[Any]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _counted(items: list[str], total: int) -> str:
    items = [i for i in items if i]
    if len(set(items)) == 1 and len(items) == total:
        return items[0]
    return ", ".join(f"{i} ({items.count(i)}/{total})" for i in dict.fromkeys(items))


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    return Path(value).name if key in PATH_KEYS else str(value)


def markdown_table(exp: Experiment, groups: dict[str, list[dict[str, Any]]]) -> str:
    """One line per configuration, seeds pooled: mean ± std where there is more than one."""
    first = [rows[0] for rows in groups.values()]
    # columns for the keys that actually differ; the rest are the same for every row
    keys = [k for k in exp.keys if len({repr(r[k]) for r in first}) > 1]
    head = ["configuration", *keys, "runs", "best val acc (%)", "test acc (%)",
            "best epoch", "epochs", "stopped", "wall time (s)", "s/epoch", "params", "note"]  # fmt: skip
    tests = {label: [r["test_acc"] for r in rows if r["test_acc"] is not None]
             for label, rows in groups.items()}  # fmt: skip
    means = {label: statistics.fmean(v) for label, v in tests.items() if v}
    top = sorted(means.values(), reverse=True)
    # bold only a strict winner: a tie has no best
    best = max(means, key=means.get) if len(top) > 1 and top[0] > top[1] else None
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, rows in groups.items():
        n_ok = sum(r["status"] is RunStatus.FINISHED for r in rows)
        test = mean_std(tests[label])
        notes = [r["diagnosis"] or (str(r["status"]) if r["status"] is not RunStatus.FINISHED else "")
                 for r in rows]  # fmt: skip
        walls = [r["wall_time_s"] for r in rows if r["wall_time_s"] is not None]
        per_epoch = [r["s_per_epoch"] for r in rows if r["s_per_epoch"] is not None]
        cells = [
            label, *[_cell(k, rows[0][k]) for k in keys],
            str(len(rows)) if n_ok == len(rows) else f"{n_ok}/{len(rows)} finished",
            mean_std([r["best_val_acc"] for r in rows if r["best_val_acc"] is not None]),
            f"**{test}**" if label == best else test,
            _span([r["best_epoch"] for r in rows]), _span([r["epochs_run"] for r in rows]),
            _counted([r["stopped"] for r in rows], len(rows)),
            f"{statistics.fmean(walls):.1f}" if walls else "–",
            f"{statistics.fmean(per_epoch):.2f}" if per_epoch else "–",
            f"{rows[0]['params']:,}" if rows[0]["params"] else "–",
            _counted(notes, len(rows)) or "",
        ]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    seeds = f"mean ± sample std over seeds {exp.seeds}" if len(exp.seeds) > 1 else "one seed"
    bold = "; **bold**: the best test accuracy" if best else ""
    lines += [
        "",
        f"Accuracies in %, {seeds}; best epoch counts from 1; wall time: the epochs' training + "
        f"validation time{bold}.",
    ]
    if any(
        r["status"] is RunStatus.FINISHED and r["test_acc"] is None
        for g in groups.values()
        for r in g
    ):
        lines += [
            "Runs on data without a test split show no test accuracy (the validation split chose "
            "the best epoch, so its accuracy is optimistic); set data.test_fraction to hold one out."
        ]
    return "\n".join(lines)


def plot_results(exp: Experiment, folder: Path, groups: dict[str, list[dict[str, Any]]],
                 path: Path) -> None:  # fmt: skip
    """Validation-accuracy curves (mean over seeds) overlaid, and test accuracy ± std."""
    from cnnlab.evaluation.plots import new_figure, save_figure

    fig = new_figure((13, max(4.0, 0.35 * len(groups) + 2)))
    ax_curve, ax_bar = fig.subplots(1, 2)
    from matplotlib.ticker import MaxNLocator

    labels, means, stds = [], [], []
    colors = [f"C{i % 10}" for i in range(len(groups))]  # one colour per configuration, both panels
    for color, (label, rows) in zip(colors, groups.items(), strict=True):
        curves = [[h["val_acc"] for h in read_history(folder / r["name"])] for r in rows]
        curves = [c for c in curves if c]
        if curves:
            # seeds may stop at different epochs: average whichever seeds reached each epoch
            n = max(map(len, curves))
            mean = [statistics.fmean(c[e] for c in curves if len(c) > e) for e in range(n)]
            ax_curve.plot(range(1, n + 1), mean, "o-", ms=3, color=color, label=label)
        tests = [r["test_acc"] for r in rows if r["test_acc"] is not None]
        labels.append(label)
        means.append(statistics.fmean(tests) if tests else None)
        stds.append(statistics.stdev(tests) if len(tests) > 1 else 0.0)
    ax_curve.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    ax_curve.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_curve.grid(alpha=0.3)
    if ax_curve.lines:
        ax_curve.legend(fontsize=7)
    ax_bar.barh(range(len(labels)), [m or 0.0 for m in means], xerr=stds, capsize=3, color=colors)
    for i, m in enumerate(means):
        # a missing bar must not read as 0 % accuracy
        text = "no test accuracy" if m is None else f"{m:.1%}"
        ax_bar.text(0.01 if m is None else m + 0.01, i, text, va="center", fontsize=7)
    ax_bar.set_yticks(range(len(labels)), labels, fontsize=7)
    ax_bar.invert_yaxis()
    ax_bar.set(xlabel="test accuracy", xlim=(0, 1), title="test accuracy (± std over seeds)")
    fig.suptitle(f"experiment {exp.name}")
    fig.tight_layout()
    save_figure(fig, path)
