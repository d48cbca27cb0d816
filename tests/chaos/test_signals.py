"""Ctrl-C and SIGTERM during the set-up (the data scan): a clean stop, exit 130, and the name
stays free; no process left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.chaos.conftest import TINY
from tests.chaos.harness import EXIT_INTERRUPTED, Outcome, left_in_group, untouched_outside


def _slow(module: str, function: str, word: str) -> str:
    """cnnlab's CLI with `module.function` replaced by one that prints `word` and waits."""
    # Ctrl-C as from a terminal: a suite started as a background job of a non-interactive shell
    # ignores SIGINT and SIGQUIT, and a child inherits that (seen: SigIgn 0x1001006)
    return f"""
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import {module} as target
def slow(*args, **kwargs):
    print("{word}", flush=True)
    time.sleep(120)
target.{function} = slow
from cnnlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _signal_masks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            return " ".join(ln.strip() for ln in fh if ln.startswith(("SigPnd", "ShdPnd", "SigBlk",
                                                                    "SigIgn", "SigCgt")))  # fmt: skip
    except OSError as e:
        return f"status unreadable ({e})"


# cnnlab with a data scan that takes as long as we like: it says "scanning" and waits
SLOW_SCAN = _slow("cnnlab.data.build", "build_data", "scanning")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_set_up_stops_cleanly_and_frees_the_name(photos, tmp_path, sig):
    runs = tmp_path / "runs"
    argv = ["train", "--runs-dir", runs, "--name", "s", "--data", photos, *TINY]
    with untouched_outside([tmp_path, photos], runs / "s"):
        proc = subprocess.Popen([sys.executable, "-c", SLOW_SCAN, *map(str, argv)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        while proc.stdout.readline().strip() != "scanning":
            assert proc.poll() is None, proc.communicate()
        started = time.monotonic()
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # which signals the child blocks, ignores or catches (inherited masks show here)
            masks = _signal_masks(proc.pid)
            proc.kill()
            pytest.fail(f"no exit 60 s after {sig.name}; child's {masks}; {proc.communicate()}")
    assert time.monotonic() - started < 30  # at once, not after the scan
    outcome = Outcome(proc.returncode, out, err)
    outcome.expect(EXIT_INTERRUPTED, "interrupted during set-up of run 's'", "nothing was trained")
    assert not (runs / "s").exists()
    assert left_in_group(proc.pid) == []


# cnnlab evaluate with an evaluation that takes as long as we like
SLOW_EVALUATE = _slow("cnnlab.evaluation.inference", "predict_logits", "evaluating")


def test_sigterm_during_evaluate_stops_like_ctrl_c_and_changes_nothing(run, photos, tmp_path):
    """SIGTERM killed evaluate silently (status -15) where Ctrl-C said 'interrupted', 130."""
    from tests.chaos.harness import folder_state

    before = folder_state(run)
    with untouched_outside([tmp_path, photos], run):
        proc = subprocess.Popen([sys.executable, "-c", SLOW_EVALUATE, "evaluate", str(run)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        while proc.stdout.readline().strip() != "evaluating":
            assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    Outcome(proc.returncode, out, err).expect(EXIT_INTERRUPTED, "interrupted")
    assert folder_state(run) == before
