import numpy as np
import pytest

from cnnlab.audit import labels as L
from cnnlab.audit.findings import Code


def test_fold_ids_are_stratified_and_seeded():
    y = np.repeat([0, 1, 2], [10, 7, 3])
    f = L.fold_ids(y, 5, seed=0)
    for c, n in ((0, 10), (1, 7), (2, 3)):
        counts = np.bincount(f[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1 and counts.sum() == n
    assert np.array_equal(f, L.fold_ids(y, 5, seed=0))
    assert not np.array_equal(f, L.fold_ids(y, 5, seed=1))


def test_logistic_regression_fits_separable_data():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, (40, 3)), rng.normal(2, 1, (40, 3))])
    y = np.repeat([0, 1], 40)
    w, b = L.fit_logistic(x, y, 2, weight_decay=1e-2)
    assert ((x @ w + b).argmax(1) == y).mean() >= 0.97
    # the decay shrinks the weights
    w_big, _ = L.fit_logistic(x, y, 2, weight_decay=1.0)
    assert np.linalg.norm(w_big) < np.linalg.norm(w)


def test_confident_learning_by_hand():
    # 3 images labelled 0, 3 labelled 1; image 2 is confidently class 1
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.65, 0.35]])
    y = np.array([0, 0, 0, 1, 1, 1])
    lq = L.confident_learning(probs, y)
    # t_0 = mean(0.9, 0.8, 0.1) = 0.6; t_1 = mean(0.8, 0.7, 0.35) = 0.6167
    assert lq.thresholds == pytest.approx([0.6, 1.85 / 3])
    # image 5: p0 0.65 >= t_0 -> counted as true 0; image 2 as true 1
    assert lq.joint.tolist() == [[2, 1], [1, 2]]
    # calibrated rows sum to 3: Q = [[2, 1], [1, 2]] / 6 -> one issue per off-diagonal cell,
    # chosen by the margin p_j - p_i: image 2 (0.8) for (0, 1), image 5 (0.3) for (1, 0)
    assert np.flatnonzero(lq.issues).tolist() == [2, 5]
    assert lq.ranking[:2].tolist() == [2, 5]  # self-confidence 0.1, 0.35
    assert lq.suggested.tolist() == [0, 0, 1, 1, 1, 0]


def test_no_issue_when_every_label_is_confident():
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]])
    lq = L.confident_learning(probs, np.array([0, 0, 1, 1]))
    assert not lq.issues.any()
    assert lq.joint.trace() == lq.joint.sum()


def test_out_of_fold_probs_find_a_flipped_label():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2, 1, (30, 4)), rng.normal(2, 1, (30, 4))])
    y = np.repeat([0, 1], 30)
    y[7] = 1  # a class-0 point labelled 1
    probs = L.out_of_fold_probs(x, y, 2, folds=5, seed=0, weight_decay=1e-2)  # 4-d toy data
    assert probs.shape == (60, 2) and np.allclose(probs.sum(1), 1)
    lq = L.confident_learning(probs, y)
    assert lq.ranking[0] == 7
    assert lq.issues[7] and lq.suggested[7] == 0


def test_label_findings_carry_given_suggested_and_rank():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([0, 0, 0, 1, 1, 1])
    lq = L.confident_learning(probs, y)
    rels = [f"f{i}.jpg" for i in range(6)]
    out = L.label_findings(
        lq, rels, ["train"] * 6, y, ["ant", "bee"], method="m", move=lambda i, new: f"mv {i} {new}"
    )
    first = next(f for f in out if f.files == ("f2.jpg",))
    assert first.code is Code.LABEL_ISSUE
    assert first.evidence["given_label"] == "ant" and first.evidence["suggested_label"] == "bee"
    assert first.evidence["self_confidence"] == pytest.approx(0.1)
    assert first.evidence["rank"] == 1 and first.fix == "mv 2 bee"
