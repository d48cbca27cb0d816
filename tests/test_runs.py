"""The run folder: names that stay inside the runs folder, one owner at a time, states as an
enum, and `--force` removing only what cnnlab wrote."""

import json
import os
import socket
import subprocess
import sys

import pytest

from cnnlab import runs
from cnnlab.errors import ConfigError, RunError
from cnnlab.runs import RunStatus


@pytest.mark.parametrize("name", ["../x", "/abs/path", "a/b/c", ".", "..", "", ".hidden", "a\\b"])
def test_a_run_name_is_one_plain_folder_name(name, tmp_path):
    with pytest.raises(ConfigError, match="not a plain folder name"):
        runs.run_folder(name, tmp_path)


def test_plain_names_are_accepted(tmp_path):
    assert runs.run_folder("vgg16-lr0.01_s1", tmp_path) == tmp_path / "vgg16-lr0.01_s1"


def test_status_round_trips_as_the_enum(tmp_path):
    runs.write_status(tmp_path, RunStatus.RUNNING, params=3)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"
    record = runs.read_status(tmp_path)
    assert record["status"] is RunStatus.RUNNING and record["params"] == 3
    runs.write_status(tmp_path, best_epoch=2)  # other fields alone keep the status
    assert runs.status_of(tmp_path) is RunStatus.RUNNING


def test_missing_and_damaged_run_json(tmp_path):
    assert runs.status_of(tmp_path) is None
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunError, match="damaged"):
        runs.read_status(tmp_path)
    assert runs.try_read_status(tmp_path) == {}
    (tmp_path / "run.json").write_text('{"status": "exploded"}')
    with pytest.raises(RunError):
        runs.read_status(tmp_path)


def _holder(tmp_path, seconds=30):
    """Another process that holds the run's lock until killed."""
    code = (
        "import sys, time; from pathlib import Path; from cnnlab import runs\n"
        "with runs.owned(Path(sys.argv[1]), log=lambda s: None):\n"
        "    print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_has_one_owner(tmp_path):
    proc = _holder(tmp_path)
    try:
        with (
            pytest.raises(runs.RunInUse, match=f"in use by process {proc.pid}"),
            runs.owned(tmp_path),
        ):
            pass
        assert runs.lock_holder(tmp_path)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_dead_owners_lock_is_taken_over_with_a_note(tmp_path):
    proc = _holder(tmp_path)
    proc.kill()  # kill -9: the lock file stays behind
    proc.wait()
    assert (tmp_path / runs.LOCK).exists() and runs.lock_holder(tmp_path) is None
    notes = []
    with runs.owned(tmp_path, log=notes.append):
        held = json.loads((tmp_path / runs.LOCK).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    assert not (tmp_path / runs.LOCK).exists()
    assert len(notes) == 1 and f"dead process {proc.pid}" in notes[0]


def test_force_removes_only_what_cnnlab_wrote(tmp_path):
    for name in ("metrics.csv", "best.ckpt", "run.json", "report.html"):
        (tmp_path / name).write_text("x")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out").write_text("x")
    (tmp_path / "my_notes.txt").write_text("mine")
    (tmp_path / "photos").mkdir()
    runs.clear_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_notes.txt", "photos"]


def test_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".last.tmp-{dead.pid}.ckpt"
    live = tmp_path / f".last.tmp-{os.getpid()}.ckpt"
    stale.write_text("x")
    live.write_text("x")
    assert runs.remove_stale_temporaries(tmp_path) == [stale.name]
    assert live.exists() and not stale.exists()


def test_a_damaged_config_or_classes_file_is_a_run_error_naming_it(tmp_path):
    from cnnlab import config as C

    (tmp_path / "config.yaml").write_text(C.to_yaml(C.Config(name="r")))
    assert runs.read_config(tmp_path).name == "r"
    text = (tmp_path / "config.yaml").read_text()
    for damaged in (text[: text.index("optim:")], "{not: [yaml", "just a string\n", ""):
        (tmp_path / "config.yaml").write_text(damaged)
        with pytest.raises(RunError, match="config.yaml is unusable.*restore it"):
            runs.read_config(tmp_path)
    assert runs.read_classes(tmp_path) is None  # a run that has not scanned its data yet
    (tmp_path / "classes.json").write_text('["ants", "bees"]')
    assert runs.read_classes(tmp_path) == ["ants", "bees"]
    for damaged in ('["ants", "be', "[]", '{"a": 1}', "[1, 2]"):
        (tmp_path / "classes.json").write_text(damaged)
        with pytest.raises(RunError, match="classes.json is unreadable"):
            runs.read_classes(tmp_path)
