import numpy as np
import pytest

from cnnlab.audit import datachecks as C
from cnnlab.audit.findings import Code, Severity
from cnnlab.data.scan import Skipped


def test_imbalance_ratio_and_class_weights():
    labels = np.array([0] * 30 + [1] * 10 + [2] * 5 + [1] * 50)
    splits = ["train"] * 45 + ["val"] * 50  # val counts do not matter
    f = C.imbalance_finding(labels, splits, ["a", "b", "c"], C.DataThresholds())
    assert f.code is Code.CLASS_IMBALANCE and f.severity is Severity.WARNING
    assert f.evidence["ratio"] == 6.0 and f.evidence["train_counts"] == {"a": 30, "b": 10, "c": 5}
    assert f.evidence["class_weights"]["c"] == pytest.approx(45 / (3 * 5))
    assert "--balance weights" in f.fix
    balanced = np.array([0] * 10 + [1] * 5)
    assert C.imbalance_finding(balanced, ["train"] * 15, ["a", "b"], C.DataThresholds()) is None


def test_skipped_files_by_reason():
    sk = [
        Skipped("/d/a/x.jpg", "truncated", "ends early"),
        Skipped("/d/a/y.jpg", "truncated", "ends early"),
        Skipped("/d/notes.txt", "not_image", "extension .txt"),
    ]
    out = {f.evidence["reason"]: f for f in C.skipped_findings(sk, lambda p: p.removeprefix("/d/"))}
    assert out["truncated"].code is Code.CORRUPT_FILE
    assert out["truncated"].severity is Severity.WARNING
    assert out["truncated"].files == ("a/x.jpg", "a/y.jpg")
    assert out["not_image"].code is Code.SKIPPED_FILE and out["not_image"].severity is Severity.INFO


def test_robust_z():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    z = C.robust_z(x)
    assert z[2] == 0.0
    assert z[4] == pytest.approx((100 - 3) / (1.4826 * 1.0))
    assert (C.robust_z(np.ones(4)) == 0).all()


def test_outlier_needs_to_be_far_from_its_class_and_from_everything():
    n = 40
    rng = np.random.default_rng(0)
    cls = 0.8 + 0.02 * rng.standard_normal((n, 5))
    alls = cls.copy()
    cls[3] = 0.1  # far from its class and from all: an outlier
    alls[3] = 0.1
    cls[7] = 0.1  # far from its class only (close to another class): a label issue, not this
    labels = np.zeros(n, dtype=np.int64)
    out = C.outlier_findings(
        cls, alls, [f"f{i}" for i in range(n)], ["train"] * n, labels, ["a"], C.DataThresholds()
    )
    assert [f.files for f in out] == [("f3",)]
    assert out[0].evidence["z_class"] >= 5 and out[0].severity is Severity.INFO
