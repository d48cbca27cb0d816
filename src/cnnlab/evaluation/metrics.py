"""Classification metrics as pure functions of logits, labels and a confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnlab.evaluation.inference import softmax


def cross_entropy(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Mean -log softmax(logits)[y], from log-sum-exp: the same loss training reports (no
    probability clipping, so a confidently wrong model shows its real, large loss)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y_true)), np.asarray(y_true)].mean())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """cm[i, j] = number of samples of true class i predicted as class j."""
    idx = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    precision = _safe_div(tp, cm.sum(axis=0).astype(np.float64))
    recall = _safe_div(tp, cm.sum(axis=1).astype(np.float64))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(axis=1)}


def topk_accuracy(logits: np.ndarray, y_true: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    topk = np.argpartition(-logits, kth=k - 1, axis=1)[:, :k]
    return float((topk == np.asarray(y_true)[:, None]).any(axis=1).mean())


def binary_auc(scores: np.ndarray, y_true: np.ndarray) -> float | None:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties averaged."""
    y = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average the ranks of tied scores
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_report(
    logits: np.ndarray, y_true: np.ndarray, classes: Sequence[str], topk: Sequence[int] = (1, 3, 5)
) -> dict[str, Any]:
    n = len(classes)
    y_true = np.asarray(y_true)
    y_pred = logits.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, n)
    pc = per_class(cm)
    probs = softmax(logits)
    nll = cross_entropy(logits, y_true)
    present = pc["support"] > 0
    report: dict[str, Any] = {
        "samples": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "loss": nll,
        "topk": {f"top{k}": topk_accuracy(logits, y_true, k) for k in topk if k <= n and k > 1},
        "macro": {
            m: float(pc[m][present].mean()) if present.any() else 0.0
            for m in ("precision", "recall", "f1")
        },
        "per_class": {
            c: {
                "precision": float(pc["precision"][i]),
                "recall": float(pc["recall"][i]),
                "f1": float(pc["f1"][i]),
                "support": int(pc["support"][i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
        "majority_class_rate": float(pc["support"].max() / max(1, len(y_true))),
        "predicted_class_histogram": np.bincount(y_pred, minlength=n).tolist(),
        "most_confused": most_confused(cm, classes),
    }
    if n == 2:  # binary semantics: class index 1 is the positive class
        report["binary"] = {
            "positive_class": classes[1],
            "precision": float(pc["precision"][1]),
            "recall": float(pc["recall"][1]),
            "f1": float(pc["f1"][1]),
            "auc": binary_auc(probs[:, 1], y_true == 1),
        }
    return report


def most_confused(cm: np.ndarray, classes: Sequence[str], top: int = 5) -> list[dict[str, Any]]:
    off = cm.copy()
    np.fill_diagonal(off, 0)
    pairs = np.dstack(np.unravel_index(np.argsort(-off, axis=None), off.shape))[0][:top]
    return [
        {"true": classes[i], "predicted": classes[j], "count": int(off[i, j])}
        for i, j in pairs
        if off[i, j] > 0
    ]
