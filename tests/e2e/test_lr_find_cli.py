"""`cnnlab lr-find` and `cnnlab train --lr auto` end to end on a Fashion-MNIST subset."""

import functools
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tests.procs import exported_weights as _weights
from tests.procs import metrics_rows as _metrics

from cnnlab.cli import main
from cnnlab.engine import lr_finder

pytestmark = pytest.mark.usefixtures("fmnist")
BASE = ["--subset", "600", "--batch-size", "32", "--threads", "2", "--seed", "0"]
# Adam on 600 images: a curve whose three rules agree (measured on the held-out losses: each
# within 1.8x of their mean, not a borderline case against the 3x bar)
AGREE = [*BASE, "--optimizer", "adam", "--epochs", "1", "--deterministic"]


def test_lr_find_writes_the_sweep_and_prints_only_json(tmp_path, capsys):
    argv = ["lr-find", "--name", "sweep", "--runs-dir", str(tmp_path), *BASE, "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)  # stdout is the JSON object and nothing else
    folder = tmp_path / "sweep"
    assert sorted(p.name for p in folder.iterdir()) == ["lr_find.json", "lr_find.png"]
    saved = json.loads((folder / "lr_find.json").read_text())
    assert printed["folder"] == str(folder)
    assert {k: v for k, v in printed.items() if k != "folder"} == saved
    assert saved["config"]["data"]["subset"] == 600 and saved["config"]["name"] == "sweep"
    lrs = np.asarray(saved["lrs"])
    # the sweep's lrs: geometric from 1e-7 towards 10, one per recorded mini-batch
    assert lrs[0] == pytest.approx(1e-7) and len(saved["losses"]) == len(lrs) >= 20
    assert np.allclose(lrs[1:] / lrs[:-1], 10 ** (8 / 99), rtol=1e-9)
    # the first losses are those of an untrained 10-class model: about ln 10
    assert np.mean(saved["losses"][:5]) == pytest.approx(np.log(10), abs=0.3)
    # 100 steps over 19 batches of 32 would train on each image 5 times: the rules read the
    # loss on one batch of validation images, each step's training loss is kept beside it
    assert saved["held_out"] == 32 and len(saved["training_losses"]) == len(lrs)
    assert saved["loss_source"].startswith("losses on 32 held-out validation images: 100 steps")
    assert "19 batches of the 600 training images" in saved["loss_source"]
    if saved["suggestion"] is None:
        assert saved["reason"].startswith("no clear valley") and saved["status"] != "suggested"
    else:
        assert saved["status"] == "suggested" and lrs[0] < saved["suggestion"] < lrs[-1]
    with Image.open(folder / "lr_find.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200


def test_lr_find_says_no_clear_valley_when_the_loss_never_falls(tmp_path, capsys):
    # up to lr 1e-5, 30 steps of SGD cannot move the loss: there is no valley to read
    argv = ["lr-find", "--runs-dir", str(tmp_path), *BASE, "--steps", "30", "--end-lr", "1e-5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no clear valley: the smoothed loss fell only from" in out and "use it" not in out
    (folder,) = tmp_path.iterdir()  # a generated name
    assert folder.name.startswith("lr-find-smallcnn-fashion-mnist-")
    saved = json.loads((folder / "lr_find.json").read_text())
    assert saved["suggestion"] is None and saved["status"] == "no_descent"
    assert len(saved["lrs"]) == 30 and saved["lrs"][-1] == pytest.approx(1e-5)


def test_lr_find_bad_settings_are_one_line_errors(tmp_path, capsys):
    assert main(["lr-find", "--runs-dir", str(tmp_path), "--steps", "5"]) == 2
    assert capsys.readouterr().err.strip() == "error: lr-find needs at least 20 steps, got 5"
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_lr_auto_trains_exactly_as_the_chosen_lr_given_by_hand(tmp_path, capsys):
    """The value is recorded in config.yaml, and the finder leaves no trace: training after it
    is bitwise the training of a run given that value with --lr."""
    assert (
        main(["train", "--name", "auto", "--runs-dir", str(tmp_path), *AGREE, "--lr", "auto"]) == 0
    )
    out = capsys.readouterr().out
    auto = tmp_path / "auto"
    saved = json.loads((auto / "lr_find.json").read_text())
    assert saved["status"] == "suggested" and saved["schedule"] == "onecycle"
    chosen = float(f"{saved['suggestion']:.3g}")
    text = (auto / "config.yaml").read_text()
    assert text.startswith(f"# optim.lr {chosen:g} was chosen by the lr finder (--lr auto")
    assert yaml.safe_load(text)["optim"]["lr"] == chosen
    assert f"--lr auto: lr {chosen:g}" in out
    assert (auto / "lr_find.png").is_file()
    argv = ["train", "--name", "fixed", "--runs-dir", str(tmp_path), *AGREE, "--lr", str(chosen)]
    assert main(argv) == 0
    fixed = tmp_path / "fixed"
    assert _metrics(auto) == _metrics(fixed)
    a, b = _weights(auto), _weights(fixed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a resume reads the recorded value: no second sweep
    assert main(["train", "--resume", str(auto), "--epochs", "2"]) == 0
    assert "--lr auto" not in capsys.readouterr().out


def test_lr_auto_without_a_clear_valley_refuses_with_the_fix(tmp_path, capsys, monkeypatch):
    # a sweep that ends at 1e-5 finds no valley on any data: the refusal path, for certain
    short = functools.partial(lr_finder.LRFindSettings, end_lr=1e-5, num_steps=30)
    monkeypatch.setattr(lr_finder, "LRFindSettings", short)
    argv = ["train", "--name", "nv", "--runs-dir", str(tmp_path), *BASE, "--lr", "auto"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: --lr auto: no clear valley: the smoothed loss fell only")
    assert f"look at {tmp_path / 'nv' / 'lr_find.png'} and give a rate, e.g. `--lr " in err
    # nothing was trained: the name stays free, only the sweep's plot and numbers remain
    assert sorted(p.name for p in (tmp_path / "nv").iterdir()) == ["lr_find.json", "lr_find.png"]


def test_lr_auto_with_a_backbone_lr_is_refused(capsys, runs_dir):
    assert main(["train", "--lr", "auto", "--backbone-lr", "0.001"]) == 2
    assert "--lr auto finds one rate for every layer" in capsys.readouterr().err
    assert not runs_dir.exists()
