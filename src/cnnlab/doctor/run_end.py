"""The doctor at the end of every run (finished, stopped early, diverged): doctor.json, its top
findings in summary.md and on the console.

The probes run only when they are cheap next to the run: they cost about PROBE_IMAGES training
images' worth of work on the CPU (a one-batch fit, one step, forward passes over validation and
training images; measured: 21.4 s for smallcnn at 70 training images/s on 2 cores), so they run
when the run trained on the CPU fast enough to do that in RUN_END_PROBE_S. Otherwise the
findings come from the run's files, and the console says how to get the probes' as well.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.doctor import REPORT_FILE, diagnose
from cnnlab.doctor.findings import DoctorReport

PROBE_IMAGES = 1500  # the probes' work in training images (forward + backward) of the run
RUN_END_PROBE_S = 5.0  # the most the end of a run spends on the probes
SHOWN = 3  # root findings in the console and summary.md (all of them are in doctor.json)
SECTION = "## Doctor"


def probes_are_cheap(status: dict[str, Any], history: list[dict[str, Any]]) -> bool:
    """Whether the probes take at most RUN_END_PROBE_S, from the run's own measured speed. The
    probes run on the CPU: a run trained on a GPU says nothing about their cost."""
    if status.get("device") != "cpu" or not history:
        return False
    speed = history[-1].get("images_per_s")
    return bool(speed) and speed == speed and PROBE_IMAGES / speed <= RUN_END_PROBE_S


def doctor_at_run_end(run_dir: Path, log: Callable[[str], None] = print) -> DoctorReport:
    """Diagnose the run that just ended, write doctor.json, add the findings to summary.md
    and say the top ones. Errors from here are the caller's to keep from failing the run."""
    from cnnlab import runs

    run_dir = Path(run_dir)
    probe = probes_are_cheap(runs.read_status(run_dir), runs.read_history(run_dir))
    report = diagnose(run_dir, probe=probe)
    for line in console_lines(report, probed=probe):
        log(line)
    add_to_summary(run_dir, report)
    return report


def console_lines(report: DoctorReport, *, probed: bool) -> list[str]:
    """The problems only (a healthy run says so in one line: no false alarm to scroll past)."""
    problems = [f for f in report.findings if f.is_problem]
    if not problems:
        return [f"doctor: no problem found ({REPORT_FILE})"]
    lines = [f"doctor: {len(problems)} problem{'s' if len(problems) != 1 else ''}, root cause "
             f"first ({REPORT_FILE}):"]  # fmt: skip
    for f in problems[:SHOWN]:
        lines.append(f"  {f.severity.value}: {f.code.value}: {f.title}")
        if f.fix:
            lines.append(f"    fix: {f.fix}")
    if not probed:
        lines.append(f"  (from the run's files; `cnnlab doctor {report.run}` adds the probes)")
    return lines


def summary_section(doctor: dict[str, Any]) -> list[str]:
    """summary.md's doctor section from doctor.json's object."""
    problems = [f for f in doctor.get("findings", []) if f.get("severity") in ("error", "warning")]
    lines = ["", SECTION, ""]
    if not problems:
        return [*lines, f"No problem found (details in {REPORT_FILE})."]
    for f in problems[:SHOWN]:
        fix = f" Fix: `{f['fix']}`." if f.get("fix") else ""
        lines.append(f"- **{f['severity']}** `{f['code']}`: {f['title']}.{fix}")
        lines += [f"  - explains `{s['code']}`: {s['title']}" for s in f.get("symptoms", [])]
    if len(problems) > SHOWN:
        lines.append(f"- … {len(problems) - SHOWN} more in {REPORT_FILE}")
    return lines


def add_to_summary(run_dir: Path, report: DoctorReport) -> None:
    """Replace summary.md's doctor section (it is the last one) or add it; a run that never
    got to its evaluation (diverged) gets a summary.md with its status and this section."""
    from cnnlab.fsio import write_text

    path = Path(run_dir) / "summary.md"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = f"# Run `{Path(run_dir).name}`\n\n- **status**: {report.status}\n"
    head = text.split(f"\n{SECTION}\n", 1)[0].rstrip("\n")
    write_text(path, head + "\n" + "\n".join(summary_section(report.to_dict())) + "\n")
