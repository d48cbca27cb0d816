"""Experiments: grid x runs x seeds and run names, every problem reported before training, the
results table from two real runs, reuse on re-run, failures and Ctrl-C that do not lose the
other runs, --dry-run, --parallel, and the diagnosis column."""

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from cnnlab import api
from cnnlab.cli import main
from cnnlab.errors import ConfigError, InterruptedRun
from cnnlab.experiment import (
    available_cpus,
    diagnose,
    load_experiment,
    mean_std,
    run_experiment,
    run_label,
    stop_kind,
)

# Fashion-MNIST, 200 images, one epoch: about a second of training per run.
TINY = {"data": {"subset": 200, "batch_size": 64}, "train": {"epochs": 1, "threads": 2}}


def write(folder: Path, doc: dict, name: str = "exp.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def read_rows(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "results.csv", encoding="utf-8") as fh:
        return {r["name"]: r for r in csv.DictReader(fh)}


# ---------------------------------------------------------------------------------------------
# expansion, names, validation (no training)


def test_runs_are_crossed_with_the_grid_and_repeated_over_seeds(tmp_path):
    doc = {
        "name": "g",
        "base": TINY,
        "grid": {"lr": [0.1, 0.01], "data.augment": ["none", "light"]},
        "runs": [{"model": "smallcnn"}, {"label": "soft", "optim.momentum": 0.8}],
        "seeds": [0, 1],
    }
    exp = load_experiment(write(tmp_path, doc))
    assert len(exp.runs) == 2 * 4 * 2
    assert exp.keys == ["model.name", "optim.lr", "data.augment", "optim.momentum"]
    names = [s.name for s in exp.runs]
    assert names[:3] == [
        "smallcnn-lr0.1-augment-none-s0", "smallcnn-lr0.1-augment-none-s1",
        "smallcnn-lr0.1-augment-light-s0",
    ]  # fmt: skip
    assert "soft-lr0.01-augment-light-s1" in names and len(set(names)) == len(names)
    spec = exp.runs[-1]
    cfg = spec.config
    assert (cfg.optim.lr, cfg.data.augment, cfg.optim.momentum) == (0.01, "light", 0.8)
    assert (cfg.train.seed, cfg.name, cfg.data.subset) == (1, spec.name, 200)
    assert spec.label == "soft-lr0.01-augment-light"


@pytest.mark.parametrize(
    "settings, label",
    [
        ({"model.name": "vgg16", "model.pretrained": True, "optim.lr": 0.001},
         "vgg16-pretrained-lr0.001"),
        ({"model.freeze_backbone": False, "model.unfreeze_at": 3}, "no-freeze-backbone-unfreeze-at3"),
        ({"optim.lr": 1e-4, "optim.weight_decay": 5e-4}, "lr0.0001-weight-decay0.0005"),
        ({"optim.lr": 1e6}, "lr1e06"),
        ({"data.path": "/data/my flowers"}, "my_flowers"),
        ({"data.augment": "a b/c"}, "augment-a_b_c"),
        ({"model.dropout": None}, "dropout-none"),
        ({}, "base"),
    ],
)  # fmt: skip
def test_run_label_is_readable_and_folder_safe(settings, label):
    assert run_label(settings) == label


def test_long_labels_are_cut_with_a_digest():
    settings = {f"optim.{k}": 0.123456 for k in ("lr", "momentum", "weight_decay", "backbone_lr")}
    settings |= {"data.path": "/x/" + "a" * 90}
    label = run_label(settings)
    assert len(label) == 100 and label != run_label({**settings, "optim.lr": 0.2})


def test_relative_paths_follow_the_file_and_alike_names_get_a_digest(tmp_path):
    for parent in ("a", "b"):
        (tmp_path / parent / "train").mkdir(parents=True)
    doc = {"name": "p", "grid": {"data.path": ["../a/train", "../b/train"]}}
    exp = load_experiment(write(tmp_path / "exps", doc))
    paths = [s.config.data.path for s in exp.runs]
    assert paths == [str(tmp_path / "a" / "train"), str(tmp_path / "b" / "train")]
    assert all(s.config.data.dataset == "folder" for s in exp.runs)
    a, b = (s.name for s in exp.runs)
    assert a != b and a.startswith("train-") and b.startswith("train-")


def test_every_problem_is_reported_before_any_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(api, "train", lambda *a, **k: pytest.fail("trained despite errors"))
    doc = {"name": "bad", "base": TINY, "grid": {"optim.lrr": [0.1]}, "sedes": [1]}
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        run_experiment(path, runs_dir=tmp_path / "runs")
    message = str(err.value)
    assert str(path) in message and "2 problems" in message
    assert "optim.lrr" in message and "did you mean: optim.lr" in message and "sedes" in message
    # per-run problems: every run's config is validated, not only the first
    doc = {"name": "bad", "base": TINY, "grid": {"optim.momentum": [0.5, 2.0]},
           "runs": [{"model.name": "smallcnn"}, {"model.name": "resnet1"}]}  # fmt: skip
    assert main(["experiment", str(write(tmp_path, doc)), "--runs-dir", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "momentum must be in [0, 1)" in line
    assert "unknown model 'resnet1'" in line and "run resnet1-momentum0.5" in line
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"grid": {"optim.lr": 0.1}}, "needs a non-empty list"),
        ({"runs": [{"optim.lr": 0.1}, {"lr": 0.1}]}, "listed twice"),
        ({"runs": [{"optim.lr": 0.1}], "grid": {"lr": [0.2]}}, "keep each key in one"),
        ({"grid": {"train.seed": [1, 2]}}, "top-level 'seeds'"),
        ({"seeds": [0, 0]}, "repeats a seed"),
        ({"seeds": "0"}, "list of integers"),
        ({"runs": [{"label": "x/y", "lr": 0.1}]}, "label must be a folder-safe name"),
        ({"runs": [{"label": "x", "lr": 0.1}, {"label": "x", "lr": 0.2}]}, "used twice"),
        ({"base": {"optim": {"lr": "fast"}}}, "needs a float"),
        ({"base": {"data": {"path": "missing"}}}, "does not exist"),
        ({"name": "../up"}, "folder-safe name"),
    ],
)  # fmt: skip
def test_bad_experiment_files_name_the_problem(tmp_path, doc, expected):
    with pytest.raises(ConfigError) as err:
        load_experiment(write(tmp_path, {"name": "x", **doc}))
    assert expected in str(err.value) and "exp.yaml" in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "nope.yaml")
    (tmp_path / "e.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_experiment(tmp_path / "e.yaml")


# ---------------------------------------------------------------------------------------------
# the diagnosis column and the table's arithmetic (pure functions)


@pytest.mark.parametrize(
    "status, test, expected",
    [
        ({"status": "diverged"}, None, "diverged"),
        ({"status": "finished"}, None, ""),
        ({"status": "finished"}, {"accuracy": 0.5, "majority_class_rate": 0.5,
                                  "predicted_class_histogram": [0, 50, 0]}, "predicts one class"),
        ({"status": "finished"}, {"accuracy": 0.505, "majority_class_rate": 0.5,
                                  "predicted_class_histogram": [30, 20]},
         "no better than the majority class"),
        ({"status": "finished"}, {"accuracy": 0.9, "majority_class_rate": 0.5,
                                  "predicted_class_histogram": [28, 22]}, ""),
        ({"status": "finished"}, {"accuracy": 0.1, "loss": math.nan,
                                  "predicted_class_histogram": [50, 0]}, "non-finite test loss"),
    ],
)  # fmt: skip
def test_diagnosis_flags_constant_and_broken_predictors(status, test, expected):
    assert diagnose(status, test) == expected


def test_mean_std_and_stop_kind():
    assert mean_std([]) == "–" and mean_std([0.85]) == "85.00"
    assert mean_std([0.8, 0.9]) == "85.00 ± 7.07"  # sample std: 0.0707
    assert stop_kind({"status": "finished", "stop_reason": "early stop (val_acc ...)"}) == (
        "early stop"
    )
    assert stop_kind({"status": "finished", "stop_reason": "max epochs"}) == "max epochs"
    assert stop_kind({"status": "diverged", "stop_reason": "loss became nan"}) == "diverged"
    assert stop_kind({}) == "not run"


# ---------------------------------------------------------------------------------------------
# orchestration with a stand-in for training: failures, Ctrl-C, --rerun-failed (fast)


class FakeTrain:
    """Writes what a finished run leaves behind; raises for the names in `fail`."""

    def __init__(self, fail: dict[str, BaseException] | None = None):
        self.fail = fail or {}
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, config=None, *, name=None, runs_dir=None, force=False, resume=None,
                 log=print, **overrides):  # fmt: skip
        self.calls.append((name, force))
        run_dir = Path(runs_dir) / name
        from cnnlab import runs

        runs.write_status(run_dir, status="running", name=name, params=1234)
        if name in self.fail:
            raise self.fail[name]
        (run_dir / "metrics.csv").write_text("epoch,val_acc,epoch_time_s\n1,0.5,1.0\n2,0.75,1.0\n")
        (run_dir / "test.json").write_text(json.dumps({
            "accuracy": 0.7, "majority_class_rate": 0.5, "predicted_class_histogram": [6, 4],
            "split": "test", "loss": 0.6,
        }))  # fmt: skip
        runs.write_status(run_dir, status="finished", stop_reason="max epochs", best_epoch=2,
                          best_val_acc=0.75, epochs_run=2, wall_time_s=2.0)  # fmt: skip


def three_runs(tmp_path: Path) -> Path:
    return write(tmp_path, {"name": "fake", "base": TINY, "grid": {"lr": [0.1, 0.2, 0.3]}})


def test_a_failed_run_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    fake = FakeTrain({"lr0.2-s0": RuntimeError("boom\nmore detail")})
    monkeypatch.setattr(api, "train", fake)
    path, runs_dir = three_runs(tmp_path), tmp_path / "runs"
    result = run_experiment(path, runs_dir=runs_dir, log=lambda s: None)
    rows = read_rows(runs_dir / "fake")
    assert [c[0] for c in fake.calls] == ["lr0.1-s0", "lr0.2-s0", "lr0.3-s0"]
    assert rows["lr0.2-s0"]["status"] == "failed"
    assert rows["lr0.2-s0"]["error"] == "RuntimeError: boom"
    assert rows["lr0.1-s0"]["status"] == rows["lr0.3-s0"]["status"] == "finished"
    assert rows["lr0.1-s0"]["test_acc"] == "0.7" and rows["lr0.1-s0"]["best_epoch"] == "2"
    assert result.summary() == "2 finished, 1 failed (1 error); retrain those with --rerun-failed"
    md = (runs_dir / "fake" / "results.md").read_text()
    assert "`lr0.2-s0`: RuntimeError: boom" in md and "0/1 finished" in md
    # a re-run keeps the failed run as it is; --rerun-failed retrains it (and only it)
    fake.calls.clear()
    run_experiment(path, runs_dir=runs_dir, log=lambda s: None)
    assert fake.calls == []
    fake.fail.clear()
    result = run_experiment(path, runs_dir=runs_dir, rerun_failed=True, log=lambda s: None)
    assert fake.calls == [("lr0.2-s0", True)] and result.summary() == "3 finished, 0 failed"


def test_ctrl_c_stops_the_experiment_and_a_rerun_continues(tmp_path, monkeypatch):
    fake = FakeTrain({"lr0.2-s0": KeyboardInterrupt()})
    monkeypatch.setattr(api, "train", fake)
    path, runs_dir = three_runs(tmp_path), tmp_path / "runs"
    with pytest.raises(InterruptedRun, match="again to continue"):
        run_experiment(path, runs_dir=runs_dir, log=lambda s: None)
    assert [c[0] for c in fake.calls] == ["lr0.1-s0", "lr0.2-s0"]  # the third never started
    rows = read_rows(runs_dir / "fake")  # the table so far is written on the way out
    assert rows["lr0.2-s0"]["status"] == "interrupted" and rows["lr0.3-s0"]["status"] == "not run"
    fake.fail.clear()
    fake.calls.clear()
    result = run_experiment(path, runs_dir=runs_dir, log=lambda s: None)
    # no checkpoint to resume from: the interrupted run starts over; the finished one is reused
    assert fake.calls == [("lr0.2-s0", True), ("lr0.3-s0", False)]
    assert result.finished == 3


def test_parallel_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="at least 1"):
        run_experiment(three_runs(tmp_path), runs_dir=tmp_path, parallel=0)


# ---------------------------------------------------------------------------------------------
# real training on a Fashion-MNIST subset


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from tests.conftest import _fmnist_present

    if not _fmnist_present():
        pytest.skip("Fashion-MNIST is not installed (`make data` installs it)")
    root = tmp_path_factory.mktemp("exp")
    path = write(root, {"name": "two", "base": TINY, "grid": {"optim.lr": [0.05, 0.01]}})
    lines: list[str] = []
    result = run_experiment(path, runs_dir=root / "runs", log=lines.append)
    return path, root / "runs", result, lines


def test_two_runs_produce_the_table(two_runs):
    path, runs_dir, result, lines = two_runs
    folder = runs_dir / "two"
    rows = read_rows(folder)
    assert list(rows) == ["lr0.05-s0", "lr0.01-s0"]
    for name, lr in (("lr0.05-s0", "0.05"), ("lr0.01-s0", "0.01")):
        row = rows[name]
        assert row["optim.lr"] == lr and row["seed"] == "0" and row["status"] == "finished"
        assert row["stopped"] == "max epochs" and row["epochs_run"] == "1"
        assert row["best_epoch"] == "1" and 0.0 <= float(row["test_acc"]) <= 1.0
        assert float(row["best_val_acc"]) > 0 and float(row["wall_time_s"]) > 0
        assert "diagnosis" in row and int(row["params"]) > 0
        assert (folder / name / "train.log").read_text().count("epoch 1/1") == 1
    md = (folder / "results.md").read_text()
    assert "| configuration | optim.lr | runs | best val acc (%) | test acc (%) |" in md
    assert "| lr0.05 | 0.05 | 1 |" in md and "| lr0.01 | 0.01 | 1 |" in md
    assert (folder / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert result.markdown in "\n".join(lines) and result.summary() == "2 finished, 0 failed"


def test_rerun_reuses_both_runs(two_runs, monkeypatch, capsys):
    path, runs_dir, _, _ = two_runs
    from cnnlab import training

    for module, fn in ((api, "train"), (api, "evaluate"), (training, "start_run")):
        monkeypatch.setattr(module, fn, lambda *a, **k: pytest.fail("a finished run was retrained"))
    ckpts = sorted((runs_dir / "two").glob("*/best.ckpt"))
    before = [p.stat().st_mtime_ns for p in ckpts]
    assert len(ckpts) == 2
    assert main(["experiment", str(path), "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 0 to train" in out and out.rstrip().endswith("2 finished, 0 failed")
    assert [p.stat().st_mtime_ns for p in ckpts] == before


def test_dry_run_prints_the_plan(two_runs, tmp_path, capsys):
    path, runs_dir, _, _ = two_runs
    assert main(["experiment", str(path), "--runs-dir", str(runs_dir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 runs (2 configurations x 1 seeds)" in out
    assert "lr0.05-s0  reuse" in out and "lr0.01-s0  reuse" in out
    assert main(["experiment", str(path), "--runs-dir", str(tmp_path), "--dry-run"]) == 0
    assert "lr0.05-s0  train" in capsys.readouterr().out and not (tmp_path / "two").exists()


def test_a_finished_run_with_other_settings_is_not_reused(two_runs, tmp_path):
    path, runs_dir, _, _ = two_runs
    changed = {"name": "two", "base": {**TINY, "train": {"epochs": 2}},
               "grid": {"optim.lr": [0.05, 0.01]}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"other settings \(train\.epochs: 1 -> 2"):
        run_experiment(write(tmp_path, changed), runs_dir=runs_dir)


def test_parallel_runs_survive_a_diverging_one(fmnist, tmp_path, capsys):
    doc = {"name": "par", "base": {**TINY, "optim": {"schedule": "none"}},
           "runs": [{"optim.lr": 1e12}, {"optim.lr": 0.01}]}  # fmt: skip
    path, runs_dir = write(tmp_path, doc), tmp_path / "runs"
    assert main(["experiment", str(path), "--runs-dir", str(runs_dir), "--parallel", "2"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(
        "1 finished, 1 failed (1 diverged); retrain those with --rerun-failed"
    )
    rows = read_rows(runs_dir / "par")
    assert rows["lr1e12-s0"]["status"] == "diverged"
    assert (
        # the doctor's top finding: the cause, with the divergence grouped under it
        rows["lr1e12-s0"]["diagnosis"] == "lr_too_high"
        and rows["lr0.01-s0"]["status"] == "finished"
    )
    assert "loss became nan" in (runs_dir / "par" / "lr1e12-s0" / "train.log").read_text()
    assert (runs_dir / "par" / "lr0.01-s0" / "planned_config.yaml").is_file()
    env = json.loads((runs_dir / "par" / "lr0.01-s0" / "environment.json").read_text())
    assert env["torch_threads"] == max(1, available_cpus() // 2)  # the cores shared out


def test_runs_that_leave_a_varied_key_unset_still_get_a_table_cell(tmp_path):
    from cnnlab.experiment.results import markdown_table, run_row

    path = tmp_path / "e.yaml"
    path.write_text(
        "name: mixed\n"
        "base: {train: {epochs: 1}}\n"
        "runs:\n"
        "  - {label: frozen, model.freeze_backbone: true, model.pretrained: true, model.name: efficientnet_lite0}\n"
        "  - {label: scratch, model.name: smallcnn}\n"
    )
    exp = load_experiment(path)
    rows = {s.label: run_row(s, tmp_path / s.name, exp.keys) for s in exp.runs}
    assert rows["scratch"]["model.freeze_backbone"] is False
    table = markdown_table(exp, {label: [row] for label, row in rows.items()})
    assert "frozen" in table and "scratch" in table


def test_the_diagnosis_column_is_the_doctors_top_finding(tmp_path):
    from cnnlab.experiment.results import doctor_diagnosis

    status, test = {"status": "finished"}, {"accuracy": 0.5, "majority_class_rate": 0.5}
    assert doctor_diagnosis(tmp_path, status, test) == "no better than the majority class"
    (tmp_path / "doctor.json").write_text(json.dumps({"diagnosis": "label_noise", "findings": []}))
    assert doctor_diagnosis(tmp_path, status, test) == "label_noise"
    (tmp_path / "doctor.json").write_text(json.dumps({"diagnosis": None, "findings": []}))
    assert doctor_diagnosis(tmp_path, status, test) == ""  # the doctor found nothing wrong
