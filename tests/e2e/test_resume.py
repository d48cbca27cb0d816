"""Interruption and resume: kill -9, SIGTERM, extension, corrupt and malicious checkpoints."""

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from tests.procs import cli_process as _cli
from tests.procs import exported_weights as _weights
from tests.procs import metrics_rows as _metrics
from tests.procs import wait_for_epochs as _wait_for_epochs

from cnnlab.cli import main

pytestmark = pytest.mark.usefixtures("fmnist")
BASE = ["--subset", "960", "--batch-size", "64", "--threads", "1", "--seed", "3", "--deterministic"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from tests.conftest import _fmnist_present

    if not _fmnist_present():
        pytest.skip("Fashion-MNIST is not installed")
    runs = tmp_path_factory.mktemp("ref")
    assert main(["train", "--name", "ref", "--runs-dir", str(runs), "--epochs", "4", *BASE]) == 0
    return runs / "ref"


@pytest.mark.parametrize("every_n_steps", [None, 4], ids=["epoch-end", "mid-epoch"])
def test_kill9_then_resume_equals_uninterrupted(reference, tmp_path, every_n_steps):
    extra = [] if every_n_steps is None else ["--checkpoint-every-n-steps", str(every_n_steps)]
    run = tmp_path / "k"
    proc = _cli("train", "--name", "k", "--runs-dir", str(tmp_path), "--epochs", "4", *BASE, *extra)
    _wait_for_epochs(proc, run, 1)
    if every_n_steps:  # let a mid-epoch checkpoint of epoch 2 land, then kill
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert len(_metrics(run)) < 4, "killed too late to test anything"
    assert main(["train", "--resume", str(run)]) == 0
    assert _metrics(run) == _metrics(reference)
    ref_w, got_w = _weights(reference), _weights(run)
    assert ref_w.keys() == got_w.keys()
    assert all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)


def test_sigterm_checkpoints_marks_interrupted_and_resumes(tmp_path):
    run = tmp_path / "t"
    proc = _cli("train", "--name", "t", "--runs-dir", str(tmp_path), "--epochs", "30", *BASE)
    _wait_for_epochs(proc, run, 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume with `cnnlab train --resume" in err and "Traceback" not in err
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    done = len(_metrics(run))
    assert main(["train", "--resume", str(run), "--epochs", str(done + 1)]) == 0
    assert [int(r["epoch"]) for r in _metrics(run)] == list(range(1, done + 2))


def test_extend_finished_run_keeps_history(reference, tmp_path):
    import shutil

    run = tmp_path / "ext"
    shutil.copytree(reference, run)
    assert main(["train", "--resume", str(run), "--epochs", "4"]) == 5  # nothing to add
    assert main(["train", "--resume", str(run), "--epochs", "5"]) == 0
    rows = _metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert rows[:4] == _metrics(reference)
    assert json.loads((run / "run.json").read_text())["epochs_run"] == 5


def test_corrupt_last_falls_back_to_previous_and_both_corrupt_is_an_error(
    reference, tmp_path, capsys
):
    import shutil

    run = tmp_path / "c"
    shutil.copytree(reference, run)
    (run / "last.ckpt").write_bytes(b"\x00garbage" * 10)
    assert main(["train", "--resume", str(run), "--epochs", "5"]) == 0
    assert "using last.prev.ckpt" in capsys.readouterr().out
    for name in ("last.ckpt", "last.prev.ckpt"):
        (run / name).write_bytes((run / name).read_bytes()[:100])
    assert main(["train", "--resume", str(run), "--epochs", "6"]) == 5
    assert "nothing to resume" in capsys.readouterr().err


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_never_runs_on_resume(reference, tmp_path, capsys, monkeypatch):
    import shutil

    run = tmp_path / "m"
    shutil.copytree(reference, run)
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": {}, "loops": {}, "x": Payload(marker)}, run / "last.ckpt")
    for env in ({}, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert main(["train", "--resume", str(run), "--epochs", "5"]) == 5
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err
        assert not marker.exists()


def test_resume_refuses_config_changes(reference, capsys):
    assert main(["train", "--resume", str(reference), "--lr", "0.5"]) == 2
    assert "cannot change on resume" in capsys.readouterr().err


def test_diverging_run_stops_with_its_own_exit_code(tmp_path, capsys):
    code = main(["train", "--name", "nan", "--runs-dir", str(tmp_path), "--epochs", "2",
                 "--lr", "1e6", "--schedule", "none", *BASE])  # fmt: skip
    assert code == 3
    assert "loss became" in capsys.readouterr().err
    run = tmp_path / "nan"
    assert json.loads((run / "run.json").read_text())["status"] == "diverged"
    assert "step" in json.loads((run / "divergence.json").read_text())["message"]
    if (run / "last.ckpt").exists():
        state = torch.load(run / "last.ckpt", weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_same_seed_same_result_other_seed_differs(reference, tmp_path):
    args = ["--runs-dir", str(tmp_path), "--epochs", "4", *BASE]
    assert main(["train", "--name", "again", *args]) == 0
    assert _metrics(tmp_path / "again") == _metrics(reference)
    a, b = _weights(reference), _weights(tmp_path / "again")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main(["train", "--name", "other", *args, "--seed", "4"]) == 0
    c = _weights(tmp_path / "other")
    assert not all(torch.equal(a[k], c[k]) for k in a)
