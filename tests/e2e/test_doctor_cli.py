"""The doctor wired end to end: `cnnlab doctor RUN --json` on a broken and on a healthy run,
doctor.json and summary.md written at every run's end, and the per-epoch check that says at
once, during training, that a run cannot learn."""

import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from cnnlab.cli import main

ARGS = ["--threads", "2", "--seed", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests.conftest import _fmnist_present

    if not _fmnist_present():
        pytest.skip("Fashion-MNIST is not installed (`make data` installs it)")
    return tmp_path_factory.mktemp("runs")


def doctor_json(capsys, *args):
    capsys.readouterr()
    assert main(["doctor", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # --json: one JSON object and nothing else


def test_lr_x1000_is_diagnosed_at_the_runs_end_and_by_cnnlab_doctor(runs, capsys):
    # lr 1000 (x10,000 the default) makes the depthwise smallcnn_dw's loss non-finite in its
    # first epoch: exit code 3 (the dense default only reaches a loss of 1e15 in 2 epochs)
    assert main(["train", "--name", "hot", "--runs-dir", str(runs), *ARGS, "--subset", "600",
                 "--model", "smallcnn_dw", "--epochs", "2", "--lr", "1000"]) == 3  # fmt: skip
    out = capsys.readouterr().out
    assert "error: lr_too_high: lr 1000 is above the usual range for sgd" in out
    saved = json.loads((runs / "hot" / "doctor.json").read_text())  # written at the run's end
    assert saved["diagnosis"] == "lr_too_high" and saved["status"] == "diverged"
    assert "`lr_too_high`" in (runs / "hot" / "summary.md").read_text()
    report = doctor_json(capsys, "hot", "--runs-dir", str(runs))
    top = report["findings"][0]
    assert top["code"] == "lr_too_high" and top["severity"] == "error"
    # the probe measured it: one SGD step at lr 1000 moves the weights by more than their norm
    assert top["evidence"]["update_ratio_median"] > 1.0 and top["fix"].startswith("--lr ")
    assert float(top["fix"].split()[1]) < 1.0  # inside the usual range for SGD
    assert "diverged" in [s["code"] for s in top["symptoms"]]
    assert report == json.loads((runs / "hot" / "doctor.json").read_text())
    import cnnlab  # the Python twin

    files_only = cnnlab.doctor("hot", probe=False, runs_dir=runs)
    assert files_only.top.code.value == "lr_too_high" and files_only.probes == {}


def test_a_healthy_run_gets_no_warning_and_no_error(runs, capsys):
    # the default recipe on 2,000 images, long enough to settle (600 images x 4 epochs, 40
    # steps, still gains 31% in its last epoch: `undertrained`, rightly)
    args = ["--subset", "2000", "--epochs", "5"]
    assert main(["train", "--name", "ok", "--runs-dir", str(runs), *ARGS, *args]) == 0
    out = capsys.readouterr().out
    assert "doctor: no problem found (doctor.json)" in out
    assert "warning" not in out and "error" not in out
    for probe in (["--no-probe"], []):
        report = doctor_json(capsys, str(runs / "ok"), *probe)
        assert report["healthy"] and report["diagnosis"] is None
        assert {f["severity"] for f in report["findings"]} <= {"info"}
    assert report["probes"]["overfit"]["fitted"]  # the probes ran, and found nothing wrong
    assert "No problem found" in (runs / "ok" / "summary.md").read_text()


def test_cnnlab_doctor_on_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["doctor", str(tmp_path)]) == 5
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a cnnlab run folder" in err and err.count("\n") == 1


class Blind(nn.Module):
    """Ignores its input: only a bias learns, so the loss can never go below ln 2."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(x), 2)


def test_a_run_that_cannot_learn_is_said_after_its_first_epoch(tmp_path):
    import cnnlab

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(800, 1, 8, 8, generator=g), torch.arange(800) % 2)
    lines: list[str] = []
    cnnlab.fit(Blind(), data, name="blind", runs_dir=tmp_path, epochs=2, batch_size=32,
               val_fraction=0.2, threads=2, log=lines.append)  # fmt: skip
    said = [s for s in lines if s.startswith("epoch 1: error: ")]
    # 640 training images in batches of 32: 20 steps, enough for the check to speak
    assert len(said) == 1 and "loss is 0.69" in said[0] and "(ln 2 = 0.693)" in said[0]
    assert "100% of the validation images are predicted" in said[0]
    assert said[0].endswith(f"fix: run `cnnlab doctor {tmp_path / 'blind'}` for the cause")
    assert not any(s.startswith("epoch 2: error") for s in lines)  # once per code
    epoch_lines = [i for i, s in enumerate(lines) if s.startswith("epoch 1/2")]
    assert epoch_lines and lines.index(said[0]) == epoch_lines[0] + 1  # at once, not at the end
    saved = json.loads((tmp_path / "blind" / "doctor.json").read_text())
    assert saved["diagnosis"] == "stuck_at_chance"
