import numpy as np
import pytest

from cnnlab.evaluation.metrics import (
    binary_auc,
    classification_report,
    confusion_matrix,
    per_class,
    topk_accuracy,
)


def test_confusion_matrix_and_per_class_by_hand():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    pc = per_class(cm)
    assert pc["precision"].tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    assert pc["recall"].tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert pc["f1"][1] == pytest.approx(0.8)


def test_topk():
    logits = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert topk_accuracy(logits, np.array([1, 1]), 1) == 0.0
    assert topk_accuracy(logits, np.array([1, 1]), 2) == 1.0


def test_auc_by_hand():
    assert binary_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(
        0.75
    )
    assert binary_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    assert binary_auc(np.array([0.5, 0.5]), np.array([1, 1])) is None


def test_report_majority_class_and_binary_block():
    logits = np.array([[2.0, 0.0]] * 4)  # always predicts class 0
    report = classification_report(logits, np.array([0, 0, 0, 1]), ["cat", "dog"])
    assert report["accuracy"] == 0.75
    assert report["majority_class_rate"] == 0.75
    assert report["predicted_class_histogram"] == [4, 0]
    assert report["binary"]["positive_class"] == "dog"
    assert report["binary"]["recall"] == 0.0
    assert report["most_confused"] == [{"true": "dog", "predicted": "cat", "count": 1}]
