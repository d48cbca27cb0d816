"""One process owns a run folder at a time; what a dead owner left behind is cleaned up; readers
of a run in training say what they read."""

from __future__ import annotations

import json
import socket

from tests.chaos.conftest import TINY
from tests.chaos.harness import (
    EXIT_RUN,
    cli,
    dead_pid,
    epochs_in,
    folder_state,
    history,
    last_good_checkpoint,
    live_lock,
    status,
    untouched_outside,
)


def test_a_run_in_training_refuses_a_second_command(capsys, run, photos, tmp_path):
    """With a run training, `--force --name X` and `--resume X` were both accepted: the folder
    ended with one run's config beside the other's metrics and model."""
    before = folder_state(run)
    commands = [
        ["train", "--runs-dir", run.parent, "--name", "r", "--data", photos, "--force",
         "--epochs", "1", "--seed", "1", *TINY[:-2]],
        ["train", "--resume", run, "--epochs", "3"],
        ["train", "--runs-dir", run.parent, "--name", "r", "--data", photos, *TINY],
    ]  # fmt: skip
    with live_lock(run) as pid, untouched_outside([tmp_path, photos], run):
        before = folder_state(run)
        for argv in commands:
            outcome = cli(capsys, *argv)
            outcome.expect(EXIT_RUN, f"run 'r' is in use by process {pid}")
            assert "--resume" not in outcome.message  # never suggested for a running run
        assert folder_state(run) == before
    assert status(run)["status"] == "finished"


def test_a_dead_owners_lock_and_temporary_files_are_cleaned_by_the_next_resume(
    capsys, run, photos, tmp_path
):
    """kill -9 leaves `.lock` and `.last.tmp-PID.ckpt` behind; they were never cleaned."""
    pid = dead_pid()
    lock = {"pid": pid, "host": socket.gethostname(), "command": "cnnlab train --name r"}
    (run / ".lock").write_text(json.dumps(lock))
    half = (run / "last.ckpt").read_bytes()
    temporary = run / f".last.tmp-{pid}.ckpt"
    temporary.write_bytes(half[: len(half) // 2])
    with untouched_outside([tmp_path, photos], run):
        outcome = cli(capsys, "train", "--resume", run, "--epochs", "3").expect(0)
    assert f"taking over the lock of r left by dead process {pid}" in outcome.out
    assert f"removed 1 temporary files of a killed writer: {temporary.name}" in outcome.out
    assert not temporary.exists() and not (run / ".lock").exists()
    assert status(run)["status"] == "finished" and len(history(run)) == 3
    assert epochs_in(last_good_checkpoint(run)) == 3


def test_evaluate_and_predict_on_a_run_in_training_say_they_read_the_best_so_far(
    capsys, run, photos, tmp_path
):
    record = status(run)
    record["status"] = "running"
    (run / "run.json").write_text(json.dumps(record))
    image = next((photos / "bees").glob("*.png"))
    with live_lock(run) as pid, untouched_outside([tmp_path, photos], run):
        plain = cli(capsys, "evaluate", run).expect(0)
        note = f"run 'r' is still training (process {pid}); using its best model so far"
        assert note in plain.out + plain.err
        # with --json the note goes to stderr, so that stdout stays valid JSON
        report = cli(capsys, "evaluate", run, "--json").expect(0)
        assert json.loads(report.out)["samples"] > 0 and note in report.err
        predicted = cli(capsys, "predict", run, image, "--json").expect(0)
        assert json.loads(predicted.out)[0]["image"] == str(image) and note in predicted.err
