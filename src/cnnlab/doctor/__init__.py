"""The run doctor: why a run failed, with the evidence and the option to change.

    from cnnlab.doctor import diagnose
    report = diagnose("runs/demo")          # reads the run folder, runs the probes
    print(report.format())                  # root cause first, symptoms grouped under it
    report.to_dict()                        # what doctor.json holds

`epoch_check` is the cheap subset the engine can run after every epoch on what it has recorded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnnlab.callable_package import make_callable
from cnnlab.doctor import thresholds as T
from cnnlab.doctor.evidence import ProbeResults, RunFolder, read_run
from cnnlab.doctor.findings import RULES, Code, DoctorReport, Finding, Severity, rank
from cnnlab.errors import CnnlabError

REPORT_FILE = "doctor.json"

__all__ = [
    "Code", "DoctorReport", "Finding", "RULES", "Severity", "diagnose", "epoch_check",
    "one_line",
]  # fmt: skip


def diagnose(run_dir: str | Path, *, probe: bool = True, write: bool = True) -> DoctorReport:
    """Read the run folder, run the probes (unless probe=False), apply the rules, rank the
    findings and write doctor.json atomically (unless write=False)."""
    from cnnlab.doctor.rules import evaluate_rules
    from cnnlab.fsio import write_json

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    probes: ProbeResults | None = None
    notes: list[str] = []
    if probe:
        probes, note = _probe(run_dir, run)
        notes += [note] if note else []
    else:
        notes.append("probes not run (--no-probe): findings come from the run's files only")
    notes += [f"{p}: findings that need it were not checked" for p in run.problems]
    report = DoctorReport(
        run=str(run_dir),
        status=run.status.get("status"),
        findings=rank(evaluate_rules(run, probes)),
        probes=probes.to_dict() if probes else {},
        notes=notes,
    )
    if write:
        write_json(run_dir / REPORT_FILE, report.to_dict())
    return report


def _probe(run_dir: Path, run: RunFolder) -> tuple[ProbeResults | None, str | None]:
    from cnnlab.doctor.adapter import load_probe_inputs
    from cnnlab.doctor.probes import run_probes

    try:
        inputs = load_probe_inputs(run_dir, run.status)
    except (CnnlabError, OSError, KeyError) as e:
        # data moved or deleted, model unreadable: the file-based rules still apply
        return None, f"probes skipped: {e}"
    note = None if inputs.saved is not None else "no exported model: saved-model probes skipped"
    try:
        return run_probes(inputs), note
    except Exception as e:  # a probe bug must not cost the file-based findings of a finished run
        return None, f"probes failed ({type(e).__name__}: {e}); findings from the files only"


def epoch_check(
    history: list[dict[str, Any]],
    signals: list[dict[str, Any]],
    *,
    num_classes: int,
    class_counts: dict[str, list[int]] | None = None,
    config: Any = None,
    classes: list[str] | None = None,
    run_dir: str | Path | None = None,
) -> list[Finding]:
    """The checks that are reliable after an epoch, from what the recorder already holds:
    nothing learnt beyond the class prior with every validation image in one class (after at
    least 20 optimizer steps), and exploding gradients. Returns warning/error findings only."""
    from cnnlab.doctor import rules as R

    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    run = RunFolder(
        path=run_dir or "RUN", config=cfg, status={"status": "running", "build": {"num_classes": num_classes}},
        history=list(history), signals=list(signals), class_counts=class_counts, classes=classes,
    )  # fmt: skip
    out = [f for f in R.gradients(run, None) if f.code is Code.EXPLODING_GRADIENTS]
    stuck = _stuck_now(run)
    if stuck is not None:
        out.append(stuck)
    return out


def _stuck_now(run: RunFolder) -> Finding | None:
    from cnnlab.doctor import measures as M

    h = run.history[-1] if run.history else None
    hist = run.signals[-1].get("val_pred_histogram") if run.signals else None
    base, maj = M.baseline_loss(run), M.majority_rate(run)
    steps = (M.steps_per_epoch(run) or 0) * len(run.history)
    if h is None or not hist or sum(hist) == 0 or base is None or maj is None:
        return None
    if steps < T.CHECK_MIN_STEPS and not (steps == 0 and len(run.history) >= 2):
        return None  # too early to tell (steps unknown: wait for a second epoch)
    k = max(range(len(hist)), key=hist.__getitem__)
    one_class = hist[k] / sum(hist) >= T.ONE_CLASS_SHARE
    loss, acc = h.get("train_loss", math.nan), h.get("val_acc", math.nan)
    if not (one_class and loss >= T.STUCK_LOSS_FRACTION * base and acc <= maj + T.STUCK_ACC_MARGIN):
        return None
    what = f"ln {run.num_classes} = {base:.3f}" if abs(base - math.log(run.num_classes)) < 1e-9 else (
        f"the class prior's entropy {base:.3f}"
    )  # fmt: skip
    return Finding(
        Code.STUCK_AT_CHANCE, Severity.ERROR,
        f"loss is {loss:.3f} ({what}) and {hist[k] / sum(hist):.0%} of the validation images are "
        f"predicted '{M.class_name(run, k)}': this run is not learning",
        {"train_loss": round(loss, 4), "baseline_loss": round(base, 4), "val_acc": round(acc, 4),
         "majority_rate": round(maj, 4), "prediction_share": round(hist[k] / sum(hist), 4),
         "optimizer_steps": steps, "threshold": f"loss >= {T.STUCK_LOSS_FRACTION} x baseline, "
         f"one class >= {T.ONE_CLASS_SHARE}, after >= {T.CHECK_MIN_STEPS} steps"},
        _early_fix(run), 0.8,
    )  # fmt: skip


def _early_fix(run: RunFolder) -> str:
    """The likeliest fix from the config alone (the full doctor at the end says more)."""
    from cnnlab.doctor import measures as M

    lr, opt = M.peak_lr(run), run.opt("optim", "optimizer", "sgd")
    if run.opt("model", "init") == "paper":
        return "--init kaiming"
    if lr > T.LR_USUAL_MAX.get(opt, 1.0):
        return f"--lr {lr / 100:g}"
    if run.opt("model", "freeze_backbone") and not run.opt("model", "pretrained"):
        return "--pretrained"
    return f"run `cnnlab doctor {run.path}` for the cause"


def one_line(f: Finding) -> str:
    """`error: <title> — fix: <fix>`: what the engine prints when a check fires."""
    return f"{f.severity.value}: {f.title}" + (f" — fix: {f.fix}" if f.fix else "")


make_callable(__name__, "doctor")  # cnnlab.doctor(run) after `import cnnlab.doctor`
