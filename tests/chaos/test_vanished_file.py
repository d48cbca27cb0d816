"""A file that disappears from the data folder mid-run: the run stops with a data error and
the exact command that continues it; that command finishes and records the file as missing."""

from __future__ import annotations

import csv
import shlex

from tests.chaos.conftest import TINY, make_photos
from tests.chaos.harness import (
    EXIT_DATA,
    cli,
    epochs_in,
    history,
    last_good_checkpoint,
    status,
    untouched_outside,
)


def test_a_vanished_file_stops_the_run_with_a_command_that_continues_it(
    capsys, monkeypatch, tmp_path
):
    from cnnlab.engine import callbacks

    data = make_photos(tmp_path / "data", per_class=8)
    runs = tmp_path / "runs"
    run = runs / "v"
    gone: list[str] = []
    write = callbacks.RunRecorder.write

    def write_then_delete(self):  # after epoch 1 is recorded, a training file disappears
        write(self)
        if not gone:
            with open(run / "split_manifest.csv") as fh:
                first = next(r["path"] for r in csv.DictReader(fh) if r["split"] == "train")
            (data / first).unlink()
            gone.append(first)

    monkeypatch.setattr(callbacks.RunRecorder, "write", write_then_delete)
    argv = ["train", "--runs-dir", runs, "--name", "v", "--data", data, "--epochs", "3", *TINY]
    with untouched_outside([tmp_path], run, data):
        outcome = cli(capsys, *argv)
    command = f"cnnlab train --resume {run} --allow-changed-data"
    outcome.expect(EXIT_DATA, gone[0].split("/")[-1], f"`{command}`", alone=False)
    assert status(run)["status"] == "failed"
    assert epochs_in(last_good_checkpoint(run)) == 1
    monkeypatch.undo()
    # the command from the message, as printed, finishes the run without the file
    with untouched_outside([tmp_path], run):
        cli(capsys, *shlex.split(command)[1:]).expect(0)
    assert status(run)["status"] == "finished"
    assert [int(r["epoch"]) for r in history(run)] == [1, 2, 3]
    with open(run / "skipped.csv") as fh:
        skipped = {r["path"]: r["reason"] for r in csv.DictReader(fh)}
    assert skipped == {str(data / gone[0]): "missing"}
    summary = (run / "summary.md").read_text()
    assert "missing" in summary and gone[0].split("/")[-1] in summary
