"""The rules: pure functions from a run folder's contents (and the probes' measurements) to
findings. Each rule puts the values it compared, and the thresholds, in the evidence.

Thresholds are module constants (the README's rule table quotes them). Rules look at
`RunFolder` (evidence.py) only; nothing here reads files or runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cnnlab.doctor import thresholds as T
from cnnlab.doctor.evidence import ProbeResults, RunFolder
from cnnlab.doctor.findings import Code, Finding, Severity

Rule = Callable[[RunFolder, ProbeResults | None], list[Finding]]


# -- helpers -----------------------------------------------------------------------------------


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _col(run: RunFolder, key: str) -> list[float]:
    return [h[key] for h in run.history if _finite(h.get(key))]


def prior(run: RunFolder, split: str = "train") -> list[float] | None:
    counts = (run.class_counts or {}).get(split)
    if not counts or sum(counts) == 0:
        return None
    return [c / sum(counts) for c in counts]


def baseline_loss(run: RunFolder) -> float | None:
    """The loss of the best constant prediction: the entropy of the class prior (ln C when
    balanced, or when the loss or the sampler rebalances the classes)."""
    n = run.num_classes
    if not n:
        return None
    p = prior(run)
    if p is None or run.opt("data", "balance", "none") != "none":
        return math.log(n)
    return -sum(q * math.log(q) for q in p if q > 0)


def majority_rate(run: RunFolder, split: str = "val") -> float | None:
    p = prior(run, split) or prior(run)
    if p is not None:
        return max(p)
    return 1.0 / run.num_classes if run.num_classes else None


def steps_per_epoch(run: RunFolder) -> int | None:
    counts = (run.class_counts or {}).get("train")
    batch = run.opt("data", "batch_size")
    if not counts or not batch:
        return None
    return -(-sum(counts) // int(batch))


def _class(run: RunFolder, k: int) -> str:
    return run.classes[k] if run.classes and k < len(run.classes) else str(k)


def _lr(run: RunFolder) -> float:
    return float(run.opt("optim", "lr", 0.1))


def _stopped_by_epochs(run: RunFolder) -> bool:
    return run.status.get("status") == "finished" and str(
        run.status.get("stop_reason", "")
    ).startswith("max epochs")


def _diverged(run: RunFolder) -> bool:
    nonfinite = any(
        not _finite(h.get(k)) for h in run.history for k in ("train_loss", "val_loss") if k in h
    )
    return run.status.get("status") == "diverged" or run.divergence is not None or nonfinite


def _stuck(run: RunFolder) -> dict[str, Any] | None:
    """Evidence that the run learnt nothing beyond the class prior, or None."""
    base, maj = baseline_loss(run), majority_rate(run)
    losses, accs = _col(run, "train_loss"), _col(run, "val_acc")
    if base is None or maj is None or not losses or not accs:
        return None
    if losses[-1] >= T.STUCK_LOSS_FRACTION * base and max(accs) <= maj + T.STUCK_ACC_MARGIN:
        return {
            "final_train_loss": round(losses[-1], 4),
            "baseline_loss": round(base, 4),
            "threshold_loss": f">= {T.STUCK_LOSS_FRACTION} x baseline",
            "best_val_acc": round(max(accs), 4),
            "majority_rate": round(maj, 4),
            "threshold_acc": f"<= majority + {T.STUCK_ACC_MARGIN}",
        }
    return None


def _progress(run: RunFolder) -> float | None:
    """How much of the baseline loss training removed: 0 = nothing, 1 = all of it."""
    base, losses = baseline_loss(run), _col(run, "train_loss")
    if base is None or not losses:
        return None
    return (base - min(losses)) / base


def _training_failed(run: RunFolder) -> list[str]:
    """Symptoms of an optimisation that did not work, as short phrases (empty: none)."""
    why = []
    if _diverged(run):
        why.append("diverged")
    if _stuck(run):
        why.append("stuck at the baseline loss")
    losses = _col(run, "train_loss")
    if len(losses) >= 2 and losses[-1] > 1.2 * min(losses):
        why.append(f"train loss ended {losses[-1] / min(losses):.1f}x above its minimum")
    return why


# -- rules -------------------------------------------------------------------------------------


def diverged(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    if not _diverged(run):
        return []
    msg = (run.divergence or {}).get("message") or run.status.get("stop_reason") or ""
    lr = _lr(run)
    return [
        Finding(
            Code.DIVERGED, Severity.ERROR,
            f"the loss became NaN/Inf after {len(run.history)} epoch(s)",
            {"epochs_completed": len(run.history), "lr": lr, "message": msg[:200]},
            f"--lr {lr / 10:g} (or --grad-clip 1.0)", 0.99,
        )
    ]  # fmt: skip


def learning_rate(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    """lr_too_high / lr_too_low from the one-step update ratio, the one-batch fit and the
    history; a ratio alone is not a finding unless training shows the matching failure."""
    lr, opt = _lr(run), run.opt("optim", "optimizer", "sgd")
    ratio = (probes.update_ratio or {}) if probes else {}
    med = ratio.get("median")
    fit = (probes.overfit or {}) if probes else {}
    failed = _training_failed(run)
    usual = T.LR_USUAL_MAX.get(opt, 1.0)
    out = []
    fit_blew_up = bool(fit) and (
        not _finite(fit.get("final_loss")) or fit["final_loss"] > fit["initial_loss"]
    )
    high = (_finite(med) and med >= T.UPDATE_RATIO_HIGH) or (_diverged(run) and lr > usual)
    if high and (failed or fit_blew_up):
        ev = {
            "lr": lr, "optimizer": opt, "update_ratio_median": _r(med),
            "threshold_ratio": f">= {T.UPDATE_RATIO_HIGH}", "usual_max_lr": usual,
            "failure": failed or ["one-batch fit blew up"],
        }  # fmt: skip
        if fit:
            ev["one_batch_fit_loss"] = [_r(fit.get("initial_loss")), _r(fit.get("final_loss"))]
        conf = 0.9 if (_finite(med) and med >= T.UPDATE_RATIO_HIGH and failed) else 0.7
        title = (
            f"lr {lr:g} is too high for {opt}: one step moves the weights by "
            f"{_pct(med)} of their norm" if _finite(med) else f"lr {lr:g} is above the usual "
            f"range for {opt} (≤ {usual:g}) and the run diverged"
        )  # fmt: skip
        out.append(
            Finding(
                Code.LR_TOO_HIGH, Severity.WARNING, title, ev, f"--lr {_suggest_lr(lr, med)}", conf
            )
        )
    progress = _progress(run)
    low = _finite(med) and med <= T.UPDATE_RATIO_LOW
    slow = (progress is not None and progress < T.LOW_PROGRESS) or (fit and not fit.get("fitted"))
    if low and slow and not high:
        ev = {
            "lr": lr, "optimizer": opt, "update_ratio_median": _r(med),
            "threshold_ratio": f"<= {T.UPDATE_RATIO_LOW}",
            "loss_progress": _r(progress), "threshold_progress": f"< {T.LOW_PROGRESS}",
            "one_batch_fitted": fit.get("fitted"),
            "one_batch_fit_loss": [_r(fit.get("initial_loss")), _r(fit.get("final_loss"))],
        }  # fmt: skip
        out.append(
            Finding(
                Code.LR_TOO_LOW, Severity.WARNING,
                f"lr {lr:g} is too low: one step moves the weights by {_pct(med)} of their norm "
                f"and training removed only {_pct(progress)} of the baseline loss",
                ev, f"--lr {_suggest_lr(lr, med)}", 0.85 if not fit.get("fitted") else 0.7,
            )
        )  # fmt: skip
    return out


def _suggest_lr(lr: float, ratio: float | None) -> str:
    """The lr that puts the first step at the healthy runs' update ratio, rounded to 1 or 3 in
    its decade (the step scales linearly with the lr for SGD, and near enough for Adam)."""
    if not _finite(ratio) or ratio <= 0:
        return f"{lr / 10:g}"
    target = lr * T.TARGET_UPDATE_RATIO / ratio
    exp = math.floor(math.log10(target))
    mant = target / 10**exp
    nice = min((1, 3, 10), key=lambda m: abs(math.log(mant / m)))
    return f"{nice * 10**exp:g}"


def _r(v: Any, digits: int = 4) -> Any:
    return float(f"{v:.{digits}g}") if _finite(v) else v


def _pct(v: Any) -> str:
    if not _finite(v):
        return "?"
    return f"{v:.3g}x" if v >= 1 else f"{100 * v:.3g}%"


def stuck_at_chance(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    ev = _stuck(run)
    if ev is None or _diverged(run):
        return []
    return [
        Finding(
            Code.STUCK_AT_CHANCE, Severity.ERROR,
            f"nothing learnt: train loss {ev['final_train_loss']} vs baseline "
            f"{ev['baseline_loss']} (ln C or the class prior's entropy), best val accuracy "
            f"{ev['best_val_acc']:.2%} vs majority class {ev['majority_rate']:.2%}",
            ev, "", 0.95,
        )
    ]  # fmt: skip


def predicts_one_class(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    hist, source = None, None
    if run.test and run.test.get("predicted_class_histogram"):
        hist, source = run.test["predicted_class_histogram"], "test.json (best model)"
    elif probes and probes.val:
        hist, source = probes.val["pred_histogram"], "validation (best model)"
    elif run.signals and run.signals[-1].get("val_pred_histogram"):
        hist, source = run.signals[-1]["val_pred_histogram"], "validation (last epoch)"
    if not hist or sum(hist) == 0 or len(hist) < 2:
        return []
    k = max(range(len(hist)), key=hist.__getitem__)
    share = hist[k] / sum(hist)
    true = prior(run, "test" if source.startswith("test") else "val") or prior(run)
    true_share = true[k] if true else 1.0 / len(hist)
    if share < T.ONE_CLASS_SHARE or true_share >= T.ONE_CLASS_MAX_TRUE_SHARE:
        return []
    return [
        Finding(
            Code.PREDICTS_ONE_CLASS, Severity.ERROR,
            f"{share:.0%} of the predictions are '{_class(run, k)}', a class that is "
            f"{true_share:.0%} of the images",
            {"class": _class(run, k), "prediction_share": _r(share), "true_share": _r(true_share),
             "threshold": f">= {T.ONE_CLASS_SHARE} of predictions, < {T.ONE_CLASS_MAX_TRUE_SHARE} of images",
             "source": source},
            "", 0.95,
        )
    ]  # fmt: skip


def gradients(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    out = []
    ratios = []
    for s in run.signals:
        layers = list((s.get("grad_norm_per_layer") or {}).items())
        if len(layers) >= 2 and layers[0][0].startswith("backbone") and layers[-1][1] > 0:
            ratios.append(layers[0][1] / layers[-1][1])
    init = probes.init_grad_ratio if probes else None
    worst = min([r for r in [*ratios[:1], init] if _finite(r)], default=None)
    if worst is not None and worst < T.VANISHING_RATIO:
        out.append(
            Finding(
                Code.VANISHING_GRADIENTS, Severity.WARNING,
                f"the first layer's gradient is {worst:.2g} of the last layer's",
                {"first_over_last": _r(worst, 3), "threshold": f"< {T.VANISHING_RATIO}",
                 "first_epoch": _r(ratios[0], 3) if ratios else None, "at_init": _r(init, 3)},
                "--init kaiming (or a model with batch norm, e.g. vgg11_bn)", 0.8,
            )
        )  # fmt: skip
    norms = _col(run, "grad_norm")
    if norms and norms[0] > 0:
        growth = max(norms) / norms[0]
        if growth >= T.EXPLODING_GROWTH or max(norms) >= T.EXPLODING_ABS:
            out.append(
                Finding(
                    Code.EXPLODING_GRADIENTS, Severity.WARNING,
                    f"the mean gradient norm reached {max(norms):.3g} ({growth:.3g}x its first "
                    "epoch's)",
                    {"first_epoch": _r(norms[0]), "max": _r(max(norms)),
                     "threshold": f"growth >= {T.EXPLODING_GROWTH:g}x or >= {T.EXPLODING_ABS:g}"},
                    f"--grad-clip 1.0 or --lr {_lr(run) / 10:g}", 0.8,
                )
            )  # fmt: skip
    return out


def dead_relu(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    d = probes.dead_relu if probes else None
    if not d or d["overall"] < T.DEAD_RELU_FRACTION:
        return []
    worst = sorted(d["per_layer"].items(), key=lambda kv: -kv[1])[:3]
    return [
        Finding(
            Code.DEAD_RELU, Severity.WARNING,
            f"{d['overall']:.0%} of the ReLU channels never fire on {d['images']} validation images",
            {"dead_fraction": _r(d["overall"]), "threshold": f">= {T.DEAD_RELU_FRACTION}",
             "worst_layers": dict(worst)},
            f"--lr {_lr(run) / 10:g} (dead units usually follow too large updates)", 0.8,
        )
    ]  # fmt: skip


def bad_init(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    if not probes or not probes.act_std:
        return []
    stds = [v for v in probes.act_std.values() if _finite(v)]
    n = run.num_classes or 2
    out = []
    if len(stds) >= 2 and stds[0] > 0:
        ratio = stds[-1] / stds[0]
        if ratio <= T.ACT_RATIO_LOW or ratio >= T.ACT_RATIO_HIGH:
            way = "shrink" if ratio < 1 else "grow"
            out.append(
                Finding(
                    Code.BAD_INIT, Severity.WARNING,
                    f"at initialisation the activations {way} {max(ratio, 1 / ratio):.3g}x from "
                    f"the first layer to the output ({run.opt('model', 'init', 'default')} init)",
                    {"output_std_over_first_layer_std": _r(ratio, 3),
                     "threshold": f"<= {T.ACT_RATIO_LOW} or >= {T.ACT_RATIO_HIGH}",
                     "first_layer_std": _r(stds[0]), "output_std": _r(stds[-1]),
                     "init": run.opt("model", "init", "default")},
                    "--init kaiming", 0.85,
                )
            )  # fmt: skip
    if _finite(probes.init_loss) and probes.init_loss > math.log(n) + T.INIT_LOSS_EXCESS:
        out.append(
            Finding(
                Code.BAD_INIT, Severity.WARNING,
                f"the loss at initialisation is {probes.init_loss:.3g}, ln C is {math.log(n):.3g}: "
                "the untrained outputs are overconfident",
                {"init_loss": _r(probes.init_loss), "ln_C": _r(math.log(n)),
                 "threshold": f"> ln C + {T.INIT_LOSS_EXCESS}",
                 "prior_bias_loss": _r(probes.prior_bias_loss)},
                "--init kaiming (or a smaller init of the last layer)", 0.7,
            )
        )  # fmt: skip
    return out[:1]


def overfitting(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    tr, va, vl = _col(run, "train_acc"), _col(run, "val_acc"), _col(run, "val_loss")
    if len(vl) < 2 or not tr or not va:
        return []
    gap, rise = tr[-1] - va[-1], vl[-1] / min(vl)
    if gap < T.OVERFIT_GAP or rise < T.OVERFIT_VAL_RISE:
        return []
    n_train = sum((run.class_counts or {}).get("train") or [0])
    return [
        Finding(
            Code.OVERFITTING, Severity.WARNING,
            f"train accuracy {tr[-1]:.0%} vs validation {va[-1]:.0%}, and the validation loss "
            f"ended {rise:.2g}x above its minimum ({n_train} training images)",
            {"train_acc": _r(tr[-1]), "val_acc": _r(va[-1]), "gap": _r(gap),
             "threshold_gap": f">= {T.OVERFIT_GAP}", "val_loss_over_min": _r(rise),
             "threshold_rise": f">= {T.OVERFIT_VAL_RISE}", "train_images": n_train},
            "--augment strong --weight-decay 5e-3, or --pretrained --freeze-backbone, or more "
            "training images", 0.8,
        )
    ]  # fmt: skip


def underfitting(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    tr, tl = _col(run, "train_acc"), _col(run, "train_loss")
    if len(tl) < 3 or _stuck(run) or _diverged(run):
        return []
    flat = abs(tl[-1] - tl[-3]) / max(tl[-3], 1e-12)
    if tr[-1] >= T.UNDERFIT_ACC or flat >= T.UNDERFIT_FLAT:
        return []
    return [
        Finding(
            Code.UNDERFITTING, Severity.WARNING,
            f"training accuracy plateaued at {tr[-1]:.0%} (loss changed {flat:.1%} in two epochs)",
            {"train_acc": _r(tr[-1]), "threshold_acc": f"< {T.UNDERFIT_ACC}",
             "loss_change_2_epochs": _r(flat), "threshold_flat": f"< {T.UNDERFIT_FLAT}"},
            "a larger model (--model), less regularisation (--weight-decay, --dropout), or a "
            "higher --lr", 0.6,
        )
    ]  # fmt: skip


def undertrained(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    va, vl = _col(run, "val_acc"), _col(run, "val_loss")
    if len(va) < 2 or len(vl) < 2 or not _stopped_by_epochs(run) or _stuck(run):
        return []
    last, total = va[-1] - va[-2], va[-1] - va[0]
    if last < T.UNDERTRAINED_GAIN or last < T.UNDERTRAINED_SHARE * total or vl[-1] >= vl[-2]:
        return []
    epochs = len(run.history)
    return [
        Finding(
            Code.UNDERTRAINED, Severity.WARNING,
            f"still improving when the epoch limit stopped it: +{last:.1%} validation accuracy "
            f"in the last epoch ({last / total:.0%} of the run's gain)",
            {"last_epoch_gain": _r(last), "total_gain": _r(total),
             "threshold": f">= {T.UNDERTRAINED_GAIN} and >= {T.UNDERTRAINED_SHARE} x total gain",
             "val_loss_last_two": [_r(vl[-2]), _r(vl[-1])], "epochs": epochs},
            f"cnnlab train --resume {run.path} --epochs {max(2 * epochs, epochs + 3)}", 0.75,
        )
    ]  # fmt: skip


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
        "largest_over_smallest": _r(ratio), "threshold": f">= {T.IMBALANCE_RATIO:g}",
        "smallest_class": _class(run, small), "smallest_count": counts[small],
        "largest_count": max(counts), "smallest_class_recall": _r(minority),
        "mean_recall": _r(mean), "threshold_recall": f"< {T.MINORITY_RECALL_SHARE} x mean",
        "balance": run.opt("data", "balance", "none"),
    }  # fmt: skip
    if probes and _finite(probes.init_loss) and _finite(probes.prior_bias_loss):
        ev["init_loss"], ev["init_loss_with_prior_bias"] = (
            _r(probes.init_loss), _r(probes.prior_bias_loss),
        )  # fmt: skip
    severity = Severity.WARNING if poor and not balanced else Severity.INFO
    return [
        Finding(
            Code.CLASS_IMBALANCE, severity,
            f"'{_class(run, small)}' has {counts[small]} training images, the largest class "
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
    tr, va = _col(run, "train_acc"), _col(run, "val_acc")
    maj = majority_rate(run)
    if tr and va and maj is not None and max(tr) >= T.MEMORISE_TRAIN_ACC and va[-1] <= maj + 0.05:
        out.append(
            Finding(
                Code.LABEL_NOISE, Severity.ERROR,
                f"training accuracy reached {max(tr):.0%} while validation stays at "
                f"{va[-1]:.0%} (majority class {maj:.0%}): the model memorises labels that "
                "do not generalise",
                {"max_train_acc": _r(max(tr)), "threshold_train": f">= {T.MEMORISE_TRAIN_ACC}",
                 "val_acc": _r(va[-1]), "majority_rate": _r(maj)},
                "check the labels: `cnnlab audit DATA` ranks likely label errors", 0.8,
            )
        )  # fmt: skip
    if probes and probes.val and probes.train_eval:
        v, t = probes.val["accuracy"], probes.train_eval["accuracy"]
        if v - t >= T.NOISE_GAP:
            out.append(
                Finding(
                    Code.LABEL_NOISE, Severity.WARNING,
                    f"the trained model agrees with {t:.0%} of the training labels but "
                    f"{v:.0%} of the validation labels: the training labels look noisy",
                    {"train_acc_no_augmentation": _r(t), "val_acc": _r(v), "gap": _r(v - t),
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
    if not probes or not _stuck(run) or _diverged(run):
        return []
    fit, ratio = probes.overfit or {}, (probes.update_ratio or {}).get("median")
    steps = (steps_per_epoch(run) or 0) * len(run.history)
    others = {f.code for f in found if f.is_problem} - {
        Code.STUCK_AT_CHANCE,
        Code.PREDICTS_ONE_CLASS,
        Code.LABEL_NOISE,
    }
    works = (
        fit.get("fitted") and _finite(ratio) and T.UPDATE_RATIO_LOW < ratio < T.UPDATE_RATIO_HIGH
    )
    if not works or others or steps < 5 * T.CHECK_MIN_STEPS:
        return []
    return [
        Finding(
            Code.LABEL_NOISE, Severity.ERROR,
            f"nothing learnt in {steps} steps although the model fits one batch in "
            f"{fit['steps']} steps at this lr: the labels look unrelated to the images",
            {"steps": steps, "one_batch_fitted": True, "update_ratio_median": _r(ratio),
             "healthy_ratio": f"{T.UPDATE_RATIO_LOW}-{T.UPDATE_RATIO_HIGH}"},
            "check that labels match images (shuffled CSV rows, wrong label column): "
            "`cnnlab audit DATA`", 0.6,
        )
    ]  # fmt: skip


def bn_mismatch(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    g = probes.bn_gap if probes else None
    if not g or g["gap"] < T.BN_GAP:
        return []
    batch = int(run.opt("data", "batch_size", 128))
    steps = (steps_per_epoch(run) or 0) * len(run.history)
    hint: tuple[Code, ...] = ()
    if batch < 16:
        fix = "--batch-size 32 (BatchNorm needs batches of 16 or more)"
    elif run.opt("model", "pretrained", False) and not run.opt("model", "freeze_backbone", False):
        fix = "--bn-eval (keep the pretrained BatchNorm statistics)"
    else:
        fix = f"more steps: cnnlab train --resume {run.path} --epochs {2 * len(run.history)}"
        hint = (Code.UNDERTRAINED,)
    return [
        Finding(
            Code.BN_MISMATCH, Severity.WARNING,
            f"BatchNorm's running statistics do not fit the data: {g['eval_acc']:.0%} accuracy "
            f"in inference mode vs {g['batch_stats_acc']:.0%} with batch statistics",
            {"eval_acc": _r(g["eval_acc"]), "batch_stats_acc": _r(g["batch_stats_acc"]),
             "gap": _r(g["gap"]), "threshold": f">= {T.BN_GAP}", "batch_size": batch,
             "optimizer_steps": steps},
            fix, 0.8, explained_by=hint,
        )
    ]  # fmt: skip


def input_not_normalized(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    s = probes.input_stats if probes else None
    if not s:
        return []
    mean, std = s["mean"], s["std"]
    lo, hi = T.INPUT_STD_LO, T.INPUT_STD_HI
    bad = max(abs(m) for m in mean) > T.INPUT_MEAN_MAX or any(not lo <= v <= hi for v in std)
    if not bad:
        return []
    raw = max(std) > T.INPUT_STD_RAW
    return [
        Finding(
            Code.INPUT_NOT_NORMALIZED, Severity.ERROR if raw else Severity.WARNING,
            f"the model's input has mean {mean} and std {std} per channel (want ~0 and ~1)"
            + (": raw 0-255 pixel values" if raw else ""),
            {"mean": mean, "std": std, "threshold": f"|mean| > {T.INPUT_MEAN_MAX} or std "
             f"outside {lo}-{hi}"},
            "normalise with the training split's mean/std (what cnnlab does from scratch) or "
            "the pretrained weights' own; check 'preprocess' in model.json", 0.9,
        )
    ]  # fmt: skip


def data_leakage(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    out = []
    dups = (probes.duplicates or {}) if probes else {}
    for split, d in dups.items():
        frac = d["copies_of_train"] / max(1, d["images"])
        if d["copies_of_train"] and frac >= T.LEAK_FRACTION:
            out.append(
                Finding(
                    Code.DATA_LEAKAGE, Severity.ERROR,
                    f"{d['copies_of_train']} of {d['images']} {split} images ({frac:.1%}) are "
                    f"exact copies of training images: {split} accuracy is inflated",
                    {"split": split, "copies": d["copies_of_train"], "images": d["images"],
                     "fraction": _r(frac), "threshold": f">= {T.LEAK_FRACTION}"},
                    "remove the copies from one side (`cnnlab audit DATA` lists them)", 0.95,
                )
            )  # fmt: skip
    for f in (run.audit or {}).get("findings", []):
        if f.get("code") == "cross_split_duplicate" and not out:
            out.append(
                Finding(
                    Code.DATA_LEAKAGE, Severity.ERROR, f"the dataset audit: {f.get('title', '')}",
                    {"files": f.get("files", [])[:4], "splits": f.get("splits")},
                    f.get("fix") or "remove the copies from one side", 0.9,
                )
            )  # fmt: skip
    return out[:1]


def val_above_train(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    tr, va = _col(run, "train_acc"), _col(run, "val_acc")
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
            {"val_acc": _r(va[-1]), "train_acc": _r(tr[-1]), "gap": _r(gap),
             "threshold": f">= {T.VAL_ABOVE_GAP} (warning >= {T.VAL_ABOVE_WARN})",
             "explanations": reasons},
            "" if not warn else "check for train/val leaks and noisy training labels "
            "(`cnnlab audit DATA`)", 0.6,
        )
    ]  # fmt: skip


def weight_decay(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    wd, lr, opt = (
        float(run.opt("optim", "weight_decay", 0)),
        _lr(run),
        run.opt("optim", "optimizer", "sgd"),
    )
    shrink = wd if opt == "adam" else lr * wd
    limit = T.ADAM_L2_MAX if opt == "adam" else T.DECAY_PER_STEP
    # a usual weight decay times an unusual lr is the lr's problem (learning_rate reports it)
    usual = {"sgd": T.WD_USUAL_SGD, "adamw": T.WD_USUAL_ADAMW}.get(opt, 0.0)
    if shrink < limit or wd <= usual:
        return []
    failed = _training_failed(run)
    progress = _progress(run)
    weak = failed or (progress is not None and progress < 0.5)
    return [
        Finding(
            Code.WEIGHT_DECAY_TOO_HIGH, Severity.WARNING if weak else Severity.INFO,
            f"weight decay {wd:g} shrinks the weights by {shrink:.2g} per step ({opt}, lr {lr:g})",
            {"weight_decay": wd, "lr": lr, "shrink_per_step": _r(shrink),
             "threshold": f">= {limit:g}", "loss_progress": _r(progress)},
            "--weight-decay 5e-4", 0.75 if weak else 0.5,
        )
    ]  # fmt: skip


def frozen_random_backbone(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    m = run.config.get("model") or {}
    if not m.get("freeze_backbone") or m.get("pretrained") or m.get("weights"):
        return []
    return [
        Finding(
            Code.FROZEN_RANDOM_BACKBONE, Severity.WARNING,
            "the backbone is frozen but untrained: only the head learns, on random features",
            {"freeze_backbone": True, "pretrained": False, "unfreeze_at": m.get("unfreeze_at")},
            "--pretrained (keep --freeze-backbone), or drop --freeze-backbone", 0.9,
        )
    ]  # fmt: skip


ALL_RULES: tuple[Rule, ...] = (
    diverged, learning_rate, stuck_at_chance, predicts_one_class, gradients, dead_relu,
    bad_init, overfitting, underfitting, undertrained, class_imbalance, label_noise,
    bn_mismatch, input_not_normalized, data_leakage, val_above_train, weight_decay,
    frozen_random_backbone,
)  # fmt: skip


def evaluate_rules(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    """Every rule, then the elimination rule that needs the others' verdicts."""
    found = [f for rule in ALL_RULES for f in rule(run, probes)]
    if not any(f.code is Code.LABEL_NOISE for f in found):
        found += labels_without_signal(run, found, probes)
    return found
