"""Label issues: out-of-fold probabilities from a linear probe, then confident learning.

1. `out_of_fold_probs`: k-fold (stratified, seeded) multinomial logistic regression on the
   embeddings; every image's probabilities come from the probe that never saw it.
2. `confident_learning` (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty
   in Dataset Labels", JAIR 2021), implemented here (cleanlab is AGPL-3.0):
     - per-class threshold t_j = mean p_j over the images labelled j;
     - confident joint C[i][j]: images labelled i whose p_j >= t_j (j the likeliest such class);
     - calibrated so each row sums to the class count, then normalised: joint Q of given and
       true label;
     - prune by noise rate: for each i != j, the round(Q[i][j] * N) images labelled i with the
       largest margin p_j - p_i are issues, kept only if C also counts them off the diagonal
       (cleanlab's "both").
   Every image gets a self-confidence p[given]: the ranking, worst first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.audit.findings import Code, Finding, Severity


def fold_ids(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold of each image, stratified: each class is shuffled (seeded) and dealt round robin."""
    out = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        perm = np.random.default_rng([seed, int(c), 0xF01D]).permutation(idx)
        out[perm] = np.arange(len(perm)) % folds
    return out


def fit_logistic(
    x: np.ndarray, y: np.ndarray, num_classes: int, weight_decay: float, max_iter: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """(W (D, K), b (K,)) minimising mean cross-entropy + weight_decay/2 * |W|^2 (L-BFGS)."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    w = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt)
        loss = loss + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def out_of_fold_probs(
    x: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    weight_decay: float = 1.0,
) -> np.ndarray:
    """(N, K) probabilities, each row from the probe trained on the other folds.

    Features are standardised with the training folds' mean and std (scale-free decay).
    """
    fold = fold_ids(labels, folds, seed)
    probs = np.zeros((len(labels), num_classes), dtype=np.float64)
    for f in range(folds):
        test, train = fold == f, fold != f
        if not test.any():
            continue
        mu = x[train].mean(axis=0)
        sd = x[train].std(axis=0) + 1e-6
        w, b = fit_logistic((x[train] - mu) / sd, labels[train], num_classes, weight_decay)
        logits = ((x[test] - mu) / sd) @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        probs[test] = e / e.sum(axis=1, keepdims=True)
    return probs


@dataclass
class LabelQuality:
    self_confidence: np.ndarray  # (N,) probability of the given label
    suggested: np.ndarray  # (N,) the likeliest class
    issues: np.ndarray  # (N,) bool: confident learning says the label is wrong
    thresholds: np.ndarray  # (K,) per-class thresholds t_j
    joint: np.ndarray  # (K, K) confident joint counts, rows given label, columns true label
    ranking: np.ndarray  # every index, lowest self-confidence first


def confident_learning(probs: np.ndarray, labels: np.ndarray) -> LabelQuality:
    n, k = probs.shape
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros(k)
    np.add.at(sums, labels, probs[np.arange(n), labels])
    # A class without images can never be "confidently" predicted: threshold above 1.
    t = np.where(counts > 0, sums / np.maximum(counts, 1), 1.1)
    above = probs >= t[None, :]
    has = above.any(axis=1)
    likeliest = np.where(above, probs, -np.inf).argmax(axis=1)
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[has], likeliest[has]), 1)
    rows = joint.sum(axis=1, keepdims=True)
    calibrated = np.where(rows > 0, joint / np.maximum(rows, 1) * counts[:, None], 0.0)
    q = calibrated / max(calibrated.sum(), 1e-12)
    pruned = np.zeros(n, dtype=bool)
    for i in range(k):
        mine = np.flatnonzero(labels == i)
        for j in range(k):
            m = int(round(q[i, j] * n))
            if i == j or m == 0 or len(mine) == 0:
                continue
            margin = probs[mine, j] - probs[mine, i]
            pruned[mine[np.argsort(-margin, kind="stable")[:m]]] = True
    off_diagonal = has & (likeliest != labels)
    self_conf = probs[np.arange(n), labels]
    return LabelQuality(
        self_confidence=self_conf,
        suggested=probs.argmax(axis=1),
        issues=pruned & off_diagonal,
        thresholds=t,
        joint=joint,
        ranking=np.argsort(self_conf, kind="stable"),
    )


def label_findings(
    lq: LabelQuality,
    rels: list[str],
    splits: list[str],
    labels: np.ndarray,
    classes: list[str],
    *,
    method: str,
    move: callable,
) -> list[Finding]:
    """One finding per issue; `move(i, new_label)` words the fix for image i."""
    rank_of = np.empty(len(lq.ranking), dtype=np.int64)
    rank_of[lq.ranking] = np.arange(len(lq.ranking))
    out = []
    for i in np.flatnonzero(lq.issues):
        given, sugg = classes[labels[i]], classes[lq.suggested[i]]
        sc = float(lq.self_confidence[i])
        out.append(
            Finding(
                code=Code.LABEL_ISSUE,
                severity=Severity.WARNING,
                title=f"{rels[i]} is labelled '{given}' but looks like '{sugg}' "
                f"(self-confidence {sc:.3f})",
                files=(rels[i],),
                splits=(splits[i],),
                evidence={
                    "given_label": given,
                    "suggested_label": sugg,
                    "self_confidence": round(sc, 4),
                    "class_threshold": round(float(lq.thresholds[labels[i]]), 4),
                    "rank": int(rank_of[i]) + 1,
                    "of": len(rels),
                    "method": method,
                },
                fix=move(int(i), sugg),
                score=1.0 - sc,
            )
        )
    return out
