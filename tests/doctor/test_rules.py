"""The rules on synthetic run folders: each rule fires on its pattern, stays quiet just past its
threshold, and quotes the numbers; expected values are computed here by hand."""

import math

import pytest

from cnnlab.doctor import data_rules as D
from cnnlab.doctor import measures as M
from cnnlab.doctor import rules as R
from cnnlab.doctor import thresholds as T
from cnnlab.doctor.evidence import ProbeResults, RunFolder
from cnnlab.doctor.findings import Code, Severity, rank

LN10 = math.log(10)
CONFIG = {
    "data": {"batch_size": 100, "balance": "none", "augment": "default"},
    "model": {"name": "smallcnn", "init": "default", "pretrained": False, "dropout": None},
    "optim": {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4, "label_smoothing": 0.0},
    "train": {"epochs": 5},
}
# A healthy Fashion-MNIST run (smallcnn, 2000 images, 5 epochs), as RunRecorder writes it.
HEALTHY = [
    (0, 1.20, 0.58, 0.80, 0.70),
    (1, 0.62, 0.77, 0.60, 0.78),
    (2, 0.50, 0.82, 0.52, 0.81),
    (3, 0.42, 0.85, 0.46, 0.83),
    (4, 0.36, 0.87, 0.44, 0.84),
]


def hist(rows, grad=1.0):
    return [
        dict(epoch=e, train_loss=tl, train_acc=ta, val_loss=vl, val_acc=va, lr=0.1,
             lr_backbone=0.1, grad_norm=grad, epoch_time_s=5.0, images_per_s=400.0)
        for e, tl, ta, vl, va in rows
    ]  # fmt: skip


def make_run(rows=HEALTHY, *, counts=None, status="finished", stop="max epochs", **kw):
    config = {s: dict(v) for s, v in CONFIG.items()}
    for dotted, value in kw.pop("set", {}).items():
        section, key = dotted.split(".")
        config[section][key] = value
    counts = counts or {"train": [200] * 10, "val": [50] * 10, "test": [50] * 10}
    return RunFolder(
        path="runs/t", config=config,
        status={"status": status, "stop_reason": stop, "build": {"num_classes": len(counts["train"]), "dropout": 0.1}},
        history=hist(rows, kw.pop("grad", 1.0)), class_counts=counts,
        classes=[f"c{i}" for i in range(len(counts["train"]))], **kw,
    )  # fmt: skip


def problems(run, probes=None):
    return [f for f in R.evaluate_rules(run, probes) if f.severity is not Severity.INFO]


def with_column(rows, column, values):
    """`rows` (epoch, train_loss, train_acc, val_loss, val_acc) with one column replaced."""
    return [r[:column] + (v,) + r[column + 1 :] for r, v in zip(rows, values, strict=True)]


TRAIN_LOSS, TRAIN_ACC, VAL_ACC = 1, 2, 4


def codes(findings):
    return [f.code for f in findings]


def test_baseline_loss_is_ln_c_when_balanced_and_the_prior_entropy_otherwise():
    assert M.baseline_loss(make_run()) == pytest.approx(LN10)
    skewed = make_run(counts={"train": [90, 10], "val": [9, 1]})
    assert M.baseline_loss(skewed) == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    weighted = make_run(counts={"train": [90, 10], "val": [9, 1]}, set={"data.balance": "weights"})
    assert M.baseline_loss(weighted) == pytest.approx(math.log(2))


def test_a_healthy_history_has_no_problem():
    assert problems(make_run()) == []


def test_stuck_at_chance_fires_at_the_baseline_and_not_below_it():
    flat = [(e, 2.30, 0.10, 2.30, 0.11) for e in range(4)]
    f = R.stuck_at_chance(make_run(flat), None)
    assert codes(f) == [Code.STUCK_AT_CHANCE] and f[0].severity is Severity.ERROR
    assert f[0].evidence["baseline_loss"] == round(LN10, 4)
    just_below = 0.949 * LN10  # under 95% of ln 10: some learning happened
    assert (
        R.stuck_at_chance(make_run([(0, 2.3, 0.1, 2.3, 0.1), (1, just_below, 0.1, 2.3, 0.1)]), None)
        == []
    )
    # at the loss, but validation accuracy 3 points above the majority rate (0.10)
    assert R.stuck_at_chance(make_run([(0, 2.3, 0.1, 2.3, 0.13)]), None) == []


def test_predicts_one_class_reads_the_best_models_test_predictions():
    test = {"predicted_class_histogram": [0, 0, 0, 490, 10, 0, 0, 0, 0, 0]}
    f = R.predicts_one_class(make_run(test=test), None)
    assert codes(f) == [Code.PREDICTS_ONE_CLASS]
    assert f[0].evidence["prediction_share"] == pytest.approx(0.98)
    assert f[0].evidence["true_share"] == pytest.approx(0.1) and "'c3'" in f[0].title
    spread = {"predicted_class_histogram": [0, 0, 0, 470, 30, 0, 0, 0, 0, 0]}  # 94%
    assert R.predicts_one_class(make_run(test=spread), None) == []


def test_predicting_the_majority_of_a_lopsided_val_split_is_not_one_class():
    counts = {"train": [850, 150], "val": [85, 15], "test": [85, 15]}
    test = {"predicted_class_histogram": [98, 2]}  # 85% of test is class 0: >= 80%
    assert R.predicts_one_class(make_run(counts=counts, test=test), None) == []


def test_lr_too_high_needs_the_step_ratio_and_a_failure():
    diverged = make_run([(0, 2.4, 0.1, 2.3, 0.1)], status="diverged", divergence={"message": "nan"})
    probes = ProbeResults(
        update_ratio={"median": 30.0},
        overfit={"initial_loss": 2.3, "final_loss": math.inf, "fitted": False},
    )
    fs = R.learning_rate(diverged, probes)
    assert codes(fs) == [Code.LR_TOO_HIGH]
    assert fs[0].evidence["update_ratio_median"] == 30.0 and fs[0].fix == "--lr 0.0001"
    # 10x the healthy step on a run that trained fine is no finding; 100x always is
    assert R.learning_rate(make_run(), ProbeResults(update_ratio={"median": 0.5})) == []
    fs = R.learning_rate(make_run(), ProbeResults(update_ratio={"median": 30.0}))
    assert codes(fs) == [Code.LR_TOO_HIGH] and fs[0].evidence["failure"] == []


def test_lr_too_high_without_probes_from_divergence_above_the_usual_range():
    run = make_run([(0, 2.4, 0.1, 2.3, 0.1)], status="diverged", divergence={"message": "nan"},
                   set={"optim.lr": 100.0})  # fmt: skip
    assert codes(R.learning_rate(run, None)) == [Code.LR_TOO_HIGH]
    assert R.learning_rate(make_run(status="diverged", divergence={"m": 1}), None) == []  # lr 0.1


def test_lr_too_low_needs_a_tiny_step_and_little_progress():
    slow = [(0, 2.29, 0.12, 2.28, 0.14), (1, 2.25, 0.17, 2.24, 0.19), (2, 2.2, 0.22, 2.2, 0.24)]
    probes = ProbeResults(
        update_ratio={"median": 3e-5},
        overfit={"initial_loss": 2.3, "final_loss": 2.2, "fitted": False, "steps": 40},
    )
    fs = R.learning_rate(make_run(slow, set={"optim.lr": 1e-4}), probes)
    assert codes(fs) == [Code.LR_TOO_LOW]
    assert fs[0].evidence["loss_progress"] == pytest.approx((LN10 - 2.2) / LN10, rel=1e-3)
    assert fs[0].fix == "--lr 0.1"  # 1e-4 * 0.03 / 3e-5: the healthy runs' step size
    # a small step on a run that learnt is not "too low"
    assert R.learning_rate(make_run(), ProbeResults(update_ratio={"median": 3e-5})) == []


def test_suggested_lr_targets_the_healthy_step_size_rounded_to_1_or_3():
    assert T.TARGET_UPDATE_RATIO == 0.03
    assert R.suggest_lr(100.0, 30.0) == "0.1"  # 100 * 0.03 / 30
    assert R.suggest_lr(1e-4, 3e-5) == "0.1"
    assert R.suggest_lr(1.0, 5.0) == "0.01"  # 0.006 is nearer 1e-2 than 3e-3 in log scale
    assert R.suggest_lr(1.0, 7.5) == "0.003"  # 0.004
    assert R.suggest_lr(0.5, None) == "0.05"
    assert R.suggest_lr(1000.0, None, 1.0) == "0.1"  # never 100: a tenth of the usual maximum


def test_gradients_vanishing_from_signals_and_exploding_from_history():
    sig = [
        {"epoch": 0, "grad_norm_per_layer": {"backbone.0": 1e-9, "backbone.3": 1e-5, "head.1": 0.1}}
    ]
    fs = R.gradients(make_run(signals=sig), None)
    assert codes(fs) == [Code.VANISHING_GRADIENTS]
    assert fs[0].evidence["first_over_last"] == pytest.approx(1e-8)
    ok = [{"epoch": 0, "grad_norm_per_layer": {"backbone.0": 0.13, "head.1": 0.62}}]
    assert R.gradients(make_run(signals=ok), None) == []
    rows = hist(HEALTHY)
    for h, g in zip(rows, [1.0, 3.0, 40.0, 150.0, 90.0], strict=True):
        h["grad_norm"] = g
    run = make_run()
    run.history = rows
    fs = R.gradients(run, None)
    assert codes(fs) == [Code.EXPLODING_GRADIENTS] and fs[0].evidence["max"] == 150.0


def test_overfitting_needs_the_gap_and_a_rising_validation_loss():
    rows = [(0, 1.5, 0.5, 1.4, 0.5), (1, 0.5, 0.85, 1.0, 0.62), (2, 0.1, 0.98, 1.3, 0.63)]
    fs = R.overfitting(make_run(rows), None)
    assert codes(fs) == [Code.OVERFITTING]
    assert fs[0].evidence["gap"] == pytest.approx(0.35)
    assert fs[0].evidence["val_loss_over_min"] == pytest.approx(1.3)
    flat_loss = [(0, 1.5, 0.5, 1.4, 0.5), (1, 0.5, 0.85, 1.0, 0.62), (2, 0.1, 0.98, 1.1, 0.63)]
    assert R.overfitting(make_run(flat_loss), None) == []  # 1.1x its minimum: < 1.2
    # the best model itself: 64% on its training images, 37% on validation (100 images, VGG)
    measured = ProbeResults(train_eval={"accuracy": 0.64}, val={"accuracy": 0.37})
    still_falling = [
        (0, 2.28, 0.15, 2.3, 0.12),
        (1, 1.5, 0.6, 1.9, 0.33),
        (2, 1.13, 0.62, 1.81, 0.35),
    ]
    fs = R.overfitting(make_run(still_falling), measured)
    assert codes(fs) == [Code.OVERFITTING]
    assert fs[0].evidence["best_model_train_minus_val"] == pytest.approx(0.27)
    assert R.overfitting(make_run(still_falling), None) == []  # the history alone: loss falling
    collapsed = [(0, 1.5, 0.5, 1.4, 0.5), (1, 0.5, 0.85, 1.0, 0.62), (2, 1.3, 0.45, 2.0, 0.14)]
    assert R.overfitting(make_run(collapsed), None) == []  # val 14%: within 5 points of 10%


def test_overfitting_when_the_gap_keeps_opening_with_a_falling_validation_loss():
    # the last 7 epochs of a 100-image VGG11-BN run (bench_doctor F14): validation loss at its
    # minimum in the last epoch, yet the training loss keeps falling while validation accuracy
    # stalls below its epoch-9 best (the last epoch's train accuracy dips: 1 image = 1 point)
    rows = [
        (9, 1.542, 0.59, 2.0257, 0.32),
        (10, 1.391, 0.58, 2.0259, 0.28),
        (11, 1.308, 0.57, 1.9762, 0.28),
        (12, 1.211, 0.64, 1.9611, 0.30),
        (13, 1.147, 0.64, 1.9465, 0.27),
        (14, 1.112, 0.67, 1.9360, 0.27),
        (15, 1.107, 0.64, 1.9326, 0.27),
    ]
    fs = R.overfitting(make_run(rows), None)
    assert codes(fs) == [Code.OVERFITTING]
    w = fs[0].evidence["widening_gap"]
    assert w["train_loss_drop"] == pytest.approx(1 - 1.107 / 1.211, abs=1e-4)  # last 3 epochs
    assert w["gap"] == pytest.approx(0.37)
    assert w["earlier_best_val"] == pytest.approx(0.32) and w["window_best_val"] == 0.27
    assert "stayed under its best of 32%" in fs[0].title
    # the same gap while validation still sets new bests is a run still learning
    learning = with_column(rows, VAL_ACC, [0.22, 0.24, 0.25, 0.27, 0.28, 0.30, 0.33])
    assert R.overfitting(make_run(learning), None) == []
    # ...a stalled validation with a narrow gap (10 points) is not overfitting either
    narrow = with_column(rows, TRAIN_ACC, [r[VAL_ACC] + 0.1 for r in rows])
    assert R.overfitting(make_run(narrow), None) == []
    # ...nor a training loss that stopped falling (-2% in 3 epochs): a plateau, not a widening gap
    flat = with_column(rows, TRAIN_LOSS, [1.20, 1.19, 1.18, 1.17, 1.16, 1.155, 1.147])
    assert R.overfitting(make_run(flat), None) == []


def test_overfitting_on_a_tiny_training_set_from_scratch_even_while_validation_rises():
    # bench_doctor F14 with another seed: 100 images on VGG11-BN from scratch, validation still
    # setting new bests (41%) 18 points under training (59%)
    rows = [
        (12, 1.3186, 0.49, 1.6789, 0.38),
        (13, 1.2669, 0.60, 1.6512, 0.39),
        (14, 1.2354, 0.56, 1.6306, 0.41),
        (15, 1.2105, 0.59, 1.6285, 0.41),
    ]
    tiny = {"train": [10] * 10, "val": [10] * 10, "test": [10] * 10}
    fs = R.overfitting(make_run(rows, counts=tiny), None)
    assert codes(fs) == [Code.OVERFITTING]
    assert fs[0].evidence["train_images_per_class"] == 10 and fs[0].evidence["gap"] == 0.18
    assert "10 training images per class on a model trained from scratch" in fs[0].title
    # pretrained weights, or 200 images per class: the same curves are no finding
    assert R.overfitting(make_run(rows, counts=tiny, set={"model.pretrained": True}), None) == []
    assert R.overfitting(make_run(rows), None) == []  # make_run's 200 per class
    # ...and on tiny data a gap under 15 points is none either
    close = with_column(rows, TRAIN_ACC, [r[VAL_ACC] + 0.1 for r in rows])
    assert R.overfitting(make_run(close, counts=tiny), None) == []


def test_undertrained_when_the_last_epoch_gains_a_large_share():
    rows = [(0, 1.0, 0.6, 0.9, 0.62), (1, 0.6, 0.78, 0.55, 0.78)]
    fs = R.undertrained(make_run(rows), None)
    assert codes(fs) == [Code.UNDERTRAINED]
    assert fs[0].fix == "cnnlab train --resume runs/t --epochs 5"
    assert R.undertrained(make_run(rows, stop="early stop (val_acc did not improve)"), None) == []
    # healthy: +1 point in the last epoch of a 14-point gain
    assert R.undertrained(make_run(), None) == []


def test_not_undertrained_when_the_training_data_is_fitted():
    # bench_doctor's H08 (generated shapes, the dense smallcnn): validation dips at the
    # one-cycle peak and recovers by +26 points in the last epoch, with the training set fitted
    rows = [(0, 0.92, 0.551, 0.80, 0.783), (1, 0.16, 0.972, 36.5, 0.333),
            (2, 0.07, 0.978, 20.6, 0.356), (3, 0.18, 0.936, 0.75, 0.728),
            (4, 0.03, 0.999, 0.046, 0.989)]  # fmt: skip
    assert R.undertrained(make_run(rows), None) == []
    # the same curve with the training set not yet fitted is still undertrained
    unfitted = [*rows[:-1], (4, 0.03, 0.95, 0.046, 0.989)]
    assert codes(R.undertrained(make_run(unfitted), None)) == [Code.UNDERTRAINED]


def test_class_imbalance_is_a_warning_only_when_a_minority_class_is_missed():
    counts = {"train": [400, 400, 20], "val": [50, 50, 50]}
    missed = ProbeResults(
        val={"recall": [0.95, 0.9, 0.1], "accuracy": 0.65, "pred_histogram": [60, 60, 30]}
    )
    fs = D.class_imbalance(make_run(counts=counts), missed)
    assert codes(fs) == [Code.CLASS_IMBALANCE] and fs[0].severity is Severity.WARNING
    assert (
        fs[0].evidence["largest_over_smallest"] == 20.0 and fs[0].evidence["smallest_class"] == "c2"
    )
    assert fs[0].fix.startswith("--balance weights")
    found = ProbeResults(
        val={"recall": [0.95, 0.9, 0.8], "accuracy": 0.88, "pred_histogram": [50, 50, 50]}
    )
    assert D.class_imbalance(make_run(counts=counts), found)[0].severity is Severity.INFO
    mild = {"train": [400, 400, 41], "val": [50, 50, 50]}  # 9.8:1
    assert D.class_imbalance(make_run(counts=mild), missed) == []


def test_label_noise_from_train_vs_val_agreement():
    probes = ProbeResults(val={"accuracy": 0.80}, train_eval={"accuracy": 0.62, "images": 1000})
    fs = D.label_noise(make_run(), probes)
    assert codes(fs) == [Code.LABEL_NOISE] and fs[0].evidence["gap"] == pytest.approx(0.18)
    close = ProbeResults(val={"accuracy": 0.80}, train_eval={"accuracy": 0.71, "images": 1000})
    assert D.label_noise(make_run(), close) == []


def test_label_noise_when_training_memorises_and_validation_stays_at_chance():
    rows = [(0, 2.3, 0.12, 2.3, 0.1), (1, 1.0, 0.6, 2.6, 0.1), (2, 0.2, 0.95, 3.5, 0.11)]
    assert codes(D.label_noise(make_run(rows), None)) == [Code.LABEL_NOISE]


def test_labels_without_signal_by_elimination():
    flat = [(e, 2.30, 0.10, 2.30, 0.10) for e in range(4)]  # 20 steps/epoch * 4 = 80 steps
    works = ProbeResults(update_ratio={"median": 0.02}, overfit={"fitted": True, "steps": 12})
    run = make_run(flat, counts={"train": [500] * 10, "val": [50] * 10})  # 50 steps/epoch
    for h, lr in zip(run.history, [0.004, 0.1, 0.075, 0.025], strict=True):
        h["lr"] = lr  # one-cycle: mean 0.051, half the peak 0.1
    found = R.evaluate_rules(run, works)
    assert Code.LABEL_NOISE in codes(found)
    assert rank(found)[0].code is Code.LABEL_NOISE
    # the same history with an optimizer that cannot fit one batch: not blamed on the labels
    broken = ProbeResults(update_ratio={"median": 0.02}, overfit={"fitted": False, "steps": 40})
    assert Code.LABEL_NOISE not in codes(R.evaluate_rules(run, broken))
    # ... nor a run that only ever trained in warm-up (mean lr 4% of the peak)
    for h in run.history:
        h["lr"] = 0.004
    assert Code.LABEL_NOISE not in codes(R.evaluate_rules(run, works))


def test_bn_mismatch_fix_depends_on_the_batch_size():
    gap = ProbeResults(bn_gap={"eval_acc": 0.3, "batch_stats_acc": 0.8, "gap": 0.5})
    small = R.bn_mismatch(make_run(set={"data.batch_size": 2}), gap)
    assert small[0].fix.startswith("--batch-size 32") and small[0].explained_by == ()
    # batch 2: training-mode accuracy 4 points under inference mode, val 16 points over train
    rows = [(0, 3.9, 0.11, 3.0, 0.19), (1, 2.6, 0.21, 2.0, 0.37)]
    noisy = ProbeResults(bn_gap={"eval_acc": 0.37, "batch_stats_acc": 0.33, "gap": -0.04})
    fs = R.bn_mismatch(make_run(rows, set={"data.batch_size": 2}), noisy)
    assert codes(fs) == [Code.BN_MISMATCH]
    assert fs[0].evidence["val_minus_train_acc"] == pytest.approx(0.16)
    assert R.bn_mismatch(make_run(rows, set={"data.batch_size": 8}), noisy) == []
    few = R.bn_mismatch(make_run(), gap)[0]
    assert "--resume" in few.fix and few.explained_by == (Code.UNDERTRAINED,)
    near = ProbeResults(bn_gap={"eval_acc": 0.75, "batch_stats_acc": 0.84, "gap": 0.09})
    assert R.bn_mismatch(make_run(), near) == []


@pytest.mark.parametrize(
    ("mean", "std", "severity"),
    [([0.05], [1.01], None), ([-1.4], [2.9], None), ([75.0], [90.0], Severity.ERROR),
     ([0.1], [0.2], Severity.WARNING), ([0.0, 1.6, 0.0], [1.0, 1.0, 1.0], Severity.WARNING)],
)  # fmt: skip
def test_input_not_normalized(mean, std, severity):
    fs = D.input_not_normalized(make_run(), ProbeResults(input_stats={"mean": mean, "std": std}))
    assert [f.severity for f in fs] == ([severity] if severity else [])


def test_data_leakage_from_exact_copies_and_from_the_audit():
    dups = ProbeResults(duplicates={"val": {"images": 500, "copies_of_train": 200}})
    fs = D.data_leakage(make_run(), dups)
    assert codes(fs) == [Code.DATA_LEAKAGE] and fs[0].evidence["fraction"] == pytest.approx(0.4)
    few = ProbeResults(duplicates={"val": {"images": 500, "copies_of_train": 4}})  # 0.8%
    assert D.data_leakage(make_run(), few) == []
    audit = {
        "findings": [
            {
                "code": "cross_split_duplicate",
                "files": ["a.png", "b.png"],
                "splits": ["train", "val"],
            }
        ]
    }
    assert codes(D.data_leakage(make_run(audit=audit), None)) == [Code.DATA_LEAKAGE]


def _cross_split(pairs: list[tuple[str, str, str]], images: dict[str, int]) -> dict:
    """audit.json with one cross_split_duplicate group per (train file, other file, its split)."""
    groups = [
        {"code": "cross_split_duplicate", "files": [t, o], "splits": ["train", split]}
        for t, o, split in pairs
    ]
    return {"findings": groups, "data": {"images": images}}


def test_data_leakage_from_the_audit_needs_the_same_fraction_as_exact_copies():
    sizes = {"train": 1500, "val": 500, "test": 500}
    # one look-alike pair per held-out split (what the audit finds in Fashion-MNIST subsets)
    one_each = _cross_split([("a.png", "v.png", "val"), ("b.png", "t.png", "test")], sizes)
    assert D.data_leakage(make_run(audit=one_each), None) == []
    # 6 of 500 test images (1.2%); a test image in two groups counts once
    six = [(f"tr{i}.png", f"te{i}.png", "test") for i in range(6)] + [("x.png", "te0.png", "test")]
    fs = D.data_leakage(make_run(audit=_cross_split(six, sizes)), None)
    assert codes(fs) == [Code.DATA_LEAKAGE]
    assert fs[0].evidence["copies"] == 6 and fs[0].evidence["fraction"] == pytest.approx(0.012)
    # a group without a training image (val <-> test) is no copy of training data
    held_out = {"findings": [{"code": "cross_split_duplicate", "files": [f"v{i}", f"t{i}"],
                              "splits": ["val", "test"]} for i in range(50)],
                "data": {"images": sizes}}  # fmt: skip
    assert D.data_leakage(make_run(audit=held_out), None) == []


def test_val_above_train_is_info_when_explained_and_a_warning_when_large():
    rows = [(0, 1.0, 0.60, 0.8, 0.66), (1, 0.7, 0.72, 0.6, 0.76)]  # +4 points, augmentation on
    assert [f.severity for f in D.val_above_train(make_run(rows), None)] == [Severity.INFO]
    big = [(0, 1.0, 0.55, 0.8, 0.70), (1, 1.0, 0.55, 0.6, 0.72)]  # +17 points
    assert [f.severity for f in D.val_above_train(make_run(big), None)] == [Severity.WARNING]


def test_weight_decay_too_high_per_optimizer():
    flat = [(e, 2.25, 0.15, 2.25, 0.16) for e in range(3)]
    fs = R.weight_decay(make_run(flat, set={"optim.weight_decay": 0.5}), None)
    assert codes(fs) == [Code.WEIGHT_DECAY_TOO_HIGH] and fs[0].severity is Severity.WARNING
    assert fs[0].evidence["shrink_per_step"] == pytest.approx(0.05)  # lr 0.1 x wd 0.5
    assert R.weight_decay(make_run(), None) == []  # 0.1 x 5e-4 = 5e-5
    adamw = make_run(set={"optim.optimizer": "adamw", "optim.lr": 1e-3, "optim.weight_decay": 0.05})
    assert R.weight_decay(adamw, None) == []  # 5e-5 per step: the usual AdamW setting


def test_frozen_random_backbone():
    fs = R.frozen_random_backbone(make_run(set={"model.freeze_backbone": True}), None)
    assert codes(fs) == [Code.FROZEN_RANDOM_BACKBONE]
    pretrained = make_run(set={"model.freeze_backbone": True, "model.pretrained": True})
    assert R.frozen_random_backbone(pretrained, None) == []


def test_bad_init_from_activation_scale_and_initial_loss():
    vgg_paper = ProbeResults(act_std={"c1": 0.01, "c2": 1e-3, "fc": 1e-9}, init_loss=LN10)
    fs = R.bad_init(make_run(set={"model.init": "paper"}), vgg_paper)
    assert (
        codes(fs) == [Code.BAD_INIT] and fs[0].evidence["output_std_over_first_layer_std"] == 1e-7
    )
    healthy = ProbeResults(act_std={"c1": 0.6, "c2": 0.4, "fc": 0.24}, init_loss=2.31)
    assert R.bad_init(make_run(), healthy) == []
    hot = ProbeResults(act_std={"c1": 0.6, "fc": 5.0}, init_loss=LN10 + 1.5)
    assert "overconfident" in R.bad_init(make_run(), hot)[0].title


def test_pretrained_inputs_far_from_zero_mean_are_right_but_raw_pixels_are_not():
    dark = ProbeResults(input_stats={"mean": [-1.8, -1.7, -1.6], "std": [0.5, 0.5, 0.5]})
    pretrained = make_run(set={"model.pretrained": True})
    assert D.input_not_normalized(pretrained, dark) == []
    assert codes(D.input_not_normalized(make_run(), dark)) == [Code.INPUT_NOT_NORMALIZED]
    raw = ProbeResults(input_stats={"mean": [74.0] * 3, "std": [90.0] * 3})
    assert codes(D.input_not_normalized(pretrained, raw)) == [Code.INPUT_NOT_NORMALIZED]


def test_late_validation_swings_at_an_unannealed_lr_are_lr_too_high():
    rows = [(0, 1.3, 0.53, 1.2, 0.52), (1, 0.78, 0.72, 1.09, 0.645), (2, 0.64, 0.76, 1.08, 0.586),
            (3, 0.59, 0.78, 0.85, 0.675), (4, 0.53, 0.8, 1.92, 0.483), (5, 0.57, 0.8, 1.3, 0.563)]  # fmt: skip
    run = make_run(rows)  # hist() gives every epoch lr 0.1: never annealed
    fs = R.learning_rate(run, None)
    assert codes(fs) == [Code.LR_TOO_HIGH]
    assert fs[0].evidence["largest_late_drop"] == pytest.approx(0.675 - 0.483)
    for h, lr in zip(run.history, [0.1, 0.1, 0.1, 0.05, 0.02, 0.01], strict=True):
        h["lr"] = lr  # annealed: the swing is the schedule's business, not a finding
    assert R.learning_rate(run, None) == []


def test_balanced_accuracy_is_the_mean_recall_of_present_classes():
    assert M.balanced_accuracy({"accuracy": 0.9, "recall": [1.0, 0.5, None]}) == 0.75
    assert M.balanced_accuracy({"accuracy": 0.9}) == 0.9
