import json
import math

import pytest
import yaml

from cnnlab.doctor.evidence import ProbeResults, read_run
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
        HEADER + "\n1,2.3,0.1,2.29,0.11,100,100,5.5,1.0,300\n2,nan,0.1,inf,0.1,100,100,,1.0,300\n"
    )
    sig = {"epoch": 1, "grad_norm_per_layer": {"backbone.0": 0.1}, "val_pred_histogram": [3, 0]}
    (run / "signals.jsonl").write_text(json.dumps(sig) + "\n\n")
    counts = {"classes": ["a", "b"], "counts": {"train": [5, 5]}, "totals": {"train": 10}}
    (run / "class_counts.json").write_text(json.dumps(counts))
    (run / "divergence.json").write_text(json.dumps({"message": "loss became nan"}))
    folder = read_run(run)
    assert folder.status["status"] == "diverged" and folder.opt("optim", "lr") == 100.0
    assert folder.history[0]["epoch"] == 1 and folder.history[0]["grad_norm"] == 5.5
    assert math.isnan(folder.history[1]["train_loss"]) and math.isinf(folder.history[1]["val_loss"])
    assert "grad_norm" not in folder.history[1]  # an empty cell: not measured
    assert folder.signals == [sig]
    assert folder.num_classes == 2 and folder.test is None and folder.audit is None
    assert folder.divergence == {"message": "loss became nan"}


def test_a_folder_without_run_json_is_a_one_line_error(tmp_path):
    with pytest.raises(RunError, match="not a cnnlab run folder"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text("{cut")
    with pytest.raises(RunError, match="run.json is damaged"):
        read_run(tmp_path)


def test_a_damaged_file_is_named_and_the_rest_still_read(tmp_path):
    from cnnlab.doctor import diagnose

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "finished"}))
    (run / "config.yaml").write_text("{}")
    (run / "test.json").write_text("{not json")
    folder = read_run(run)
    assert folder.test is None and folder.status == {"status": "finished"}
    assert [p.split(" ")[0] for p in folder.problems] == ["test.json"]
    report = diagnose(run, probe=False, write=False)
    assert any(n.startswith("test.json is damaged") for n in report.notes)


def test_probe_results_drop_what_was_not_measured():
    assert ProbeResults(init_loss=2.3).to_dict() == {"init_loss": 2.3}


def test_the_doctor_and_the_report_read_with_the_same_reader():
    from cnnlab.doctor.evidence import RunFolder as DoctorRunFolder
    from cnnlab.report.run_folder import RunFolder as ReportRunFolder
    from cnnlab.report.run_folder import read_run_folder

    assert DoctorRunFolder is ReportRunFolder
    from cnnlab.doctor import evidence

    assert evidence.read_run_folder is read_run_folder
