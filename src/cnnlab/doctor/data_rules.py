"""Rules about the data: class imbalance, noisy or meaningless labels, inputs that are not
normalised, leaks between splits, validation above training. Pure functions, as in rules.py."""

from __future__ import annotations

from typing import Any

from cnnlab.doctor import thresholds as T
from cnnlab.doctor.evidence import ProbeResults, RunFolder
from cnnlab.doctor.findings import Code, Finding, Severity
from cnnlab.doctor.measures import (
    balanced_accuracy,
    class_name,
    column,
    diverged,
    finite,
    majority_rate,
    peak_lr,
    rounded,
    steps_per_epoch,
    stuck_evidence,
)


def class_imbalance(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    counts = (run.class_counts or {}).get("train")
    if not counts or min(counts) == 0 or len(counts) < 2:
        return []
    ratio = max(counts) / min(counts)
    if ratio < T.IMBALANCE_RATIO:
        return []
    small = min(range(len(counts)), key=counts.__getitem__)
    recall = _recalls(run, probes)
    known = [r for r in recall if r is not None] if recall else []
    mean = sum(known) / len(known) if known else None
    minority = recall[small] if recall else None
    poor = minority is not None and mean and minority < T.MINORITY_RECALL_SHARE * mean
    balanced = run.opt("data", "balance", "none") != "none"
    ev = {
        "largest_over_smallest": rounded(ratio), "threshold": f">= {T.IMBALANCE_RATIO:g}",
        "smallest_class": class_name(run, small), "smallest_count": counts[small],
        "largest_count": max(counts), "smallest_class_recall": rounded(minority),
        "mean_recall": rounded(mean), "threshold_recall": f"< {T.MINORITY_RECALL_SHARE} x mean",
        "balance": run.opt("data", "balance", "none"),
    }  # fmt: skip
    if probes and finite(probes.init_loss) and finite(probes.prior_bias_loss):
        ev["init_loss"], ev["init_loss_with_prior_bias"] = (
            rounded(probes.init_loss), rounded(probes.prior_bias_loss),
        )  # fmt: skip
    severity = Severity.WARNING if poor and not balanced else Severity.INFO
    return [
        Finding(
            Code.CLASS_IMBALANCE, severity,
            f"'{class_name(run, small)}' has {counts[small]} training images, the largest class "
            f"{max(counts)} ({ratio:.0f}:1)"
            + (f"; its recall is {minority:.0%} (mean {mean:.0%})" if poor else ""),
            ev, "" if balanced else "--balance weights (or --balance sampler)", 0.85,
        )
    ]  # fmt: skip


def _recalls(run: RunFolder, probes: ProbeResults | None) -> list[float | None] | None:
    if probes and probes.val:
        return probes.val["recall"]
    if run.test and run.test.get("per_class") and run.classes:
        pc = run.test["per_class"]
        return [pc[c]["recall"] if pc[c]["support"] else None for c in run.classes if c in pc]
    return None


def label_noise(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    out = []
    tr, va = column(run, "train_acc"), column(run, "val_acc")
    maj = majority_rate(run)
    if tr and va and maj is not None and max(tr) >= T.MEMORISE_TRAIN_ACC and va[-1] <= maj + 0.05:
        out.append(
            Finding(
                Code.LABEL_NOISE, Severity.ERROR,
                f"training accuracy reached {max(tr):.0%} while validation stays at "
                f"{va[-1]:.0%} (majority class {maj:.0%}): the model memorises labels that "
                "do not generalise",
                {"max_train_acc": rounded(max(tr)), "threshold_train": f">= {T.MEMORISE_TRAIN_ACC}",
                 "val_acc": rounded(va[-1]), "majority_rate": rounded(maj)},
                "check the labels: `cnnlab audit DATA` ranks likely label errors", 0.8,
            )
        )  # fmt: skip
    if probes and probes.val and probes.train_eval:
        v, t = balanced_accuracy(probes.val), balanced_accuracy(probes.train_eval)
        if v - t >= T.NOISE_GAP:
            out.append(
                Finding(
                    Code.LABEL_NOISE, Severity.WARNING,
                    f"the trained model agrees with {t:.0%} of the training labels but "
                    f"{v:.0%} of the validation labels (mean recall): the training labels look "
                    "noisy",
                    {"train_acc_no_augmentation": rounded(t), "val_acc": rounded(v), "gap": rounded(v - t),
                     "threshold": f">= {T.NOISE_GAP}", "images": probes.train_eval["images"]},
                    "check the training labels: `cnnlab audit DATA` ranks likely label errors; "
                    "--label-smoothing 0.1 softens their effect", 0.8,
                )
            )  # fmt: skip
    for f in (run.audit or {}).get("findings", []):
        if f.get("code") == "label_issue" and f.get("severity") in ("error", "warning"):
            out.append(
                Finding(
                    Code.LABEL_NOISE, Severity.WARNING, f"the dataset audit: {f.get('title', '')}",
                    {"audit": f.get("evidence", {})}, f.get("fix", ""), 0.7,
                )
            )  # fmt: skip
            break
    return out[:1]


def labels_without_signal(
    run: RunFolder, found: list[Finding], probes: ProbeResults | None
) -> list[Finding]:
    """By elimination: nothing learnt, yet the probes show a model and optimizer that work
    (one batch fitted, sane step size, normalised input, healthy init) and no other cause."""
    if not probes or not stuck_evidence(run) or diverged(run):
        return []
    fit, ratio = probes.overfit or {}, (probes.update_ratio or {}).get("median")
    steps = (steps_per_epoch(run) or 0) * len(run.history)
    others = {f.code for f in found if f.is_problem} - {
        Code.STUCK_AT_CHANCE,
        Code.PREDICTS_ONE_CLASS,
        Code.LABEL_NOISE,
    }
    works = fit.get("fitted") and finite(ratio) and T.UPDATE_RATIO_LOW < ratio < T.UPDATE_RATIO_HIGH
    # the run itself must have trained near the lr the probe fitted with, not only in warm-up
    lrs, peak = column(run, "lr"), peak_lr(run)
    lr_share = sum(lrs) / len(lrs) / peak if lrs and peak > 0 else 0.0
    enough = steps >= T.LABEL_SIGNAL_MIN_STEPS and lr_share >= T.LABEL_SIGNAL_LR_SHARE
    if not works or others or not enough:
        return []
    return [
        Finding(
            Code.LABEL_NOISE, Severity.ERROR,
            f"nothing learnt in {steps} steps although the model fits one batch in "
            f"{fit['steps']} steps at this lr: the labels look unrelated to the images",
            {"steps": steps, "threshold_steps": f">= {T.LABEL_SIGNAL_MIN_STEPS}",
             "mean_lr_over_peak": rounded(lr_share), "threshold_lr": f">= {T.LABEL_SIGNAL_LR_SHARE}",
             "one_batch_fitted": True, "update_ratio_median": rounded(ratio),
             "healthy_ratio": f"{T.UPDATE_RATIO_LOW}-{T.UPDATE_RATIO_HIGH}"},
            "check that labels match images (shuffled CSV rows, wrong label column): "
            "`cnnlab audit DATA`", 0.6,
        )
    ]  # fmt: skip


def input_not_normalized(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    s = probes.input_stats if probes else None
    if not s:
        return []
    mean, std = s["mean"], s["std"]
    lo, hi = T.INPUT_STD_LO, T.INPUT_STD_HI
    bad = max(abs(m) for m in mean) > T.INPUT_MEAN_MAX or any(not lo <= v <= hi for v in std)
    raw = max(std) > T.INPUT_STD_RAW
    # pretrained weights want their own statistics, whatever the data's (a dark photo set sits
    # at mean -1.8 under ImageNet's): only raw-scale input is wrong there
    pretrained = bool(run.opt("model", "pretrained", False) or run.opt("model", "weights"))
    if not raw and (not bad or pretrained):
        return []
    return [
        Finding(
            Code.INPUT_NOT_NORMALIZED, Severity.ERROR if raw else Severity.WARNING,
            f"the model's input has mean {mean} and std {std} per channel (want ~0 and ~1)"
            + (": raw 0-255 pixel values" if raw else ""),
            {"mean": mean, "std": std, "threshold": f"|mean| > {T.INPUT_MEAN_MAX} or std "
             f"outside {lo}-{hi} (pretrained weights: std > {T.INPUT_STD_RAW:g})"},
            "normalise with the training split's mean/std (what cnnlab does from scratch) or "
            "the pretrained weights' own; check 'preprocess' in model.json", 0.9,
        )
    ]  # fmt: skip


def data_leakage(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    """One rule for both sources: a held-out split with at least LEAK_FRACTION of its images
    copies of training images, counted exactly by the probe or (exact and near) by the audit.
    A single look-alike pair among hundreds of images inflates no accuracy: on Fashion-MNIST's
    28 px garments the audit's near-duplicate rule pairs a few look-alikes in any subset."""
    dups = (probes.duplicates or {}) if probes else {}
    counts = [
        (split, d["copies_of_train"], d["images"], "exact copies") for split, d in dups.items()
    ]
    counts += [(split, n, images, "copies (the dataset audit)")
               for split, (n, images) in _audit_copies_of_train(run.audit or {}).items()]  # fmt: skip
    for split, copies, images, what in counts:
        frac = copies / max(1, images)
        if copies and frac >= T.LEAK_FRACTION:
            return [
                Finding(
                    Code.DATA_LEAKAGE, Severity.ERROR,
                    f"{copies} of {images} {split} images ({frac:.1%}) are {what} of training "
                    f"images: {split} accuracy is inflated",
                    {"split": split, "copies": copies, "images": images,
                     "fraction": rounded(frac), "threshold": f">= {T.LEAK_FRACTION}"},
                    "remove the copies from one side (`cnnlab audit DATA` lists them)", 0.95,
                )
            ]  # fmt: skip
    return []


def _audit_copies_of_train(audit: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per held-out split: (its images in a cross-split duplicate group with a training image,
    its image count), from audit.json."""
    files: dict[str, set[str]] = {}
    for f in audit.get("findings", []):
        splits = f.get("splits") or []
        if f.get("code") != "cross_split_duplicate" or "train" not in splits:
            continue
        for rel, split in zip(f.get("files") or [], splits, strict=False):
            if split != "train":
                files.setdefault(split, set()).add(rel)
    sizes = (audit.get("data") or {}).get("images") or {}
    return {split: (len(rels), int(sizes.get(split) or len(rels))) for split, rels in files.items()}


def val_above_train(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    tr, va = column(run, "train_acc"), column(run, "val_acc")
    if not tr or not va or va[-1] - tr[-1] < T.VAL_ABOVE_GAP:
        return []
    gap = va[-1] - tr[-1]
    reasons = []
    if run.opt("data", "augment", "default") != "none":
        reasons.append(f"augmentation ({run.opt('data', 'augment')})")
    dropout = (run.status.get("build") or {}).get("dropout") or run.opt("model", "dropout")
    if dropout:
        reasons.append(f"dropout {dropout}")
    if run.opt("optim", "label_smoothing", 0):
        reasons.append("label smoothing")
    if len(tr) >= 2 and tr[-1] - tr[-2] > 0:
        reasons.append("training accuracy is averaged over an epoch in which it still rose")
    warn = gap >= T.VAL_ABOVE_WARN or not reasons
    return [
        Finding(
            Code.VAL_ABOVE_TRAIN, Severity.WARNING if warn else Severity.INFO,
            f"validation accuracy {va[-1]:.0%} is above training accuracy {tr[-1]:.0%}"
            + (f" (explained by {', '.join(reasons)})" if not warn else ": suspicious"),
            {"val_acc": rounded(va[-1]), "train_acc": rounded(tr[-1]), "gap": rounded(gap),
             "threshold": f">= {T.VAL_ABOVE_GAP} (warning >= {T.VAL_ABOVE_WARN})",
             "explanations": reasons},
            "" if not warn else "check for train/val leaks and noisy training labels "
            "(`cnnlab audit DATA`)", 0.6,
        )
    ]  # fmt: skip
