"""The doctor at a run's end: when the probes are cheap enough, and what summary.md and the
console get (the training wiring itself is tested end to end in tests/e2e/test_doctor_cli.py)."""

from cnnlab.doctor import Code, Severity
from cnnlab.doctor.findings import DoctorReport, Finding
from cnnlab.doctor.run_end import (
    PROBE_IMAGES,
    RUN_END_PROBE_S,
    add_to_summary,
    console_lines,
    probes_are_cheap,
)


def test_probes_run_at_the_end_only_when_the_runs_own_cpu_speed_makes_them_cheap():
    fast = PROBE_IMAGES / RUN_END_PROBE_S  # images/s at which the probes take the budget
    assert probes_are_cheap({"device": "cpu"}, [{"images_per_s": fast}])
    assert not probes_are_cheap({"device": "cpu"}, [{"images_per_s": fast * 0.9}])
    assert not probes_are_cheap({"device": "cuda"}, [{"images_per_s": fast * 100}])
    assert not probes_are_cheap({"device": "cpu"}, [])  # diverged in its first epoch
    assert not probes_are_cheap({"device": "cpu"}, [{"images_per_s": float("nan")}])


def _report(*findings):
    return DoctorReport(run="runs/x", status="finished", findings=list(findings))


HIGH = Finding(Code.LR_TOO_HIGH, Severity.ERROR, "lr 100 is too high", {"lr": 100}, "--lr 0.1", 0.9)
INFO = Finding(Code.CLASS_IMBALANCE, Severity.INFO, "mild imbalance", {}, "", 0.5)


def test_a_healthy_run_says_one_line_and_no_warning():
    lines = console_lines(_report(INFO), probed=True)
    assert lines == ["doctor: no problem found (doctor.json)"]


def test_problems_are_said_with_their_fix_and_how_to_get_the_probes():
    lines = console_lines(_report(HIGH, INFO), probed=False)
    assert (
        lines[1] == "  error: lr_too_high: lr 100 is too high" and lines[2] == "    fix: --lr 0.1"
    )
    assert "cnnlab doctor runs/x" in lines[-1] and not any("imbalance" in s for s in lines)


def test_the_summary_section_is_replaced_not_repeated(tmp_path):
    (tmp_path / "summary.md").write_text("# Run `x`\n\n- **status**: finished\n")
    add_to_summary(tmp_path, _report(HIGH))
    add_to_summary(tmp_path, _report(HIGH))
    text = (tmp_path / "summary.md").read_text()
    assert text.count("## Doctor") == 1 and text.startswith("# Run `x`")
    assert "- **error** `lr_too_high`: lr 100 is too high. Fix: `--lr 0.1`." in text
    add_to_summary(tmp_path, _report(INFO))
    text = (tmp_path / "summary.md").read_text()
    assert "No problem found" in text and "lr_too_high" not in text


def test_a_run_without_summary_gets_one_with_the_findings(tmp_path):
    add_to_summary(tmp_path, DoctorReport(run="r", status="diverged", findings=[HIGH]))
    text = (tmp_path / "summary.md").read_text()
    assert "**status**: diverged" in text and "`lr_too_high`" in text
