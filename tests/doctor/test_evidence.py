import json
import math

import pytest
import yaml

from cnnlab.doctor.evidence import ProbeResults, read_run_folder
from cnnlab.errors import RunError

HEADER = (
    "epoch,train_loss,train_acc,val_loss,val_acc,lr,lr_backbone,grad_norm,epoch_time_s,images_per_s"
)


def test_reads_metrics_signals_and_optional_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "diverged"}))
    (run / "config.yaml").write_text(yaml.safe_dump({"optim": {"lr": 100.0}}))
    (run / "metrics.csv").write_text(
        HEADER + "\n0,2.3,0.1,2.29,0.11,100,100,5.5,1.0,300\n1,nan,0.1,inf,0.1,100,100,,1.0,300\n"
    )
    sig = {"epoch": 0, "grad_norm_per_layer": {"backbone.0": 0.1}, "val_pred_histogram": [3, 0]}
    (run / "signals.jsonl").write_text(json.dumps(sig) + "\n\n")
    (run / "class_counts.json").write_text(json.dumps({"train": [5, 5]}))
    (run / "divergence.json").write_text(json.dumps({"message": "loss became nan"}))
    folder = read_run_folder(run)
    assert folder.status["status"] == "diverged" and folder.opt("optim", "lr") == 100.0
    assert folder.history[0]["epoch"] == 0 and folder.history[0]["grad_norm"] == 5.5
    assert math.isnan(folder.history[1]["train_loss"]) and math.isinf(folder.history[1]["val_loss"])
    assert math.isnan(folder.history[1]["grad_norm"])  # an empty cell
    assert folder.signals == [sig]
    assert folder.num_classes == 2 and folder.test is None and folder.audit is None
    assert folder.divergence == {"message": "loss became nan"}


def test_a_folder_without_run_json_is_a_one_line_error(tmp_path):
    with pytest.raises(RunError, match="not a cnnlab run folder"):
        read_run_folder(tmp_path)


def test_a_damaged_json_file_names_itself(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "finished"}))
    (run / "config.yaml").write_text("{}")
    (run / "test.json").write_text("{not json")
    with pytest.raises(RunError, match="test.json is unreadable"):
        read_run_folder(run)


def test_probe_results_drop_what_was_not_measured():
    assert ProbeResults(init_loss=2.3).to_dict() == {"init_loss": 2.3}


def test_class_counts_in_either_layout(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "finished"}))
    (run / "config.yaml").write_text("{}")
    folder_layout = {"classes": ["a", "b"], "counts": {"train": [7, 3]}, "totals": {"train": 10}}
    (run / "class_counts.json").write_text(json.dumps(folder_layout))
    assert read_run_folder(run).class_counts == {"train": [7, 3]}
    (run / "class_counts.json").write_text(json.dumps({"train": [7, 3]}))
    assert read_run_folder(run).class_counts == {"train": [7, 3]}
