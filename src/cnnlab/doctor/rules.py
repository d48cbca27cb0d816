"""The rules: pure functions from a run folder's contents (and the probes' measurements) to
findings. Each rule puts the values it compared, and the thresholds, in the evidence.

Thresholds live in thresholds.py (the README's rule table is written from them); rules look at
`RunFolder` and `ProbeResults` (evidence.py) only: nothing here reads files or runs a model.
This module has the optimisation and training-curve rules; data_rules.py the data rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from cnnlab.doctor import data_rules as D
from cnnlab.doctor import thresholds as T
from cnnlab.doctor.evidence import ProbeResults, RunFolder
from cnnlab.doctor.findings import Code, Finding, Severity
from cnnlab.doctor.measures import (
    balanced_accuracy,
    class_name,
    column,
    diverged,
    finite,
    loss_progress,
    majority_rate,
    peak_lr,
    prior,
    ratio_text,
    rounded,
    steps_per_epoch,
    stopped_by_epoch_limit,
    stuck_evidence,
    training_failures,
)

Rule = Callable[[RunFolder, ProbeResults | None], list[Finding]]


def divergence(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    if not diverged(run):
        return []
    msg = (run.divergence or {}).get("message") or run.status.get("stop_reason") or ""
    lr, usual = peak_lr(run), T.LR_USUAL_MAX.get(run.opt("optim", "optimizer", "sgd"), 1.0)
    done = sum(finite(h.get("train_loss")) and finite(h.get("val_loss")) for h in run.history)
    return [
        Finding(
            Code.DIVERGED, Severity.ERROR,
            f"the loss became NaN/Inf in epoch {done + 1}",
            {"epochs_completed": done, "lr": lr, "message": msg[:200]},
            f"--lr {min(lr, usual) / 10:g} (or --grad-clip 1.0)", 0.99,
        )
    ]  # fmt: skip


def learning_rate(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    """lr_too_high / lr_too_low from the one-step update ratio, the one-batch fit and the
    history; a ratio alone is not a finding unless training shows the matching failure."""
    lr, opt = peak_lr(run), run.opt("optim", "optimizer", "sgd")
    ratio = (probes.update_ratio or {}) if probes else {}
    med = ratio.get("median")
    fit = (probes.overfit or {}) if probes else {}
    dead = (probes.dead_relu or {}).get("overall") if probes else None
    failed = training_failures(run, dead)
    usual = T.LR_USUAL_MAX.get(opt, 1.0)
    out = []
    fit_blew_up = bool(fit) and (
        not finite(fit.get("final_loss")) or fit["final_loss"] > fit["initial_loss"]
    )
    high = (finite(med) and med >= T.UPDATE_RATIO_HIGH) or (diverged(run) and lr > usual)
    extreme = finite(med) and med >= T.UPDATE_RATIO_EXTREME
    if high and (failed or fit_blew_up or extreme):
        ev = {
            "lr": lr, "optimizer": opt, "update_ratio_median": rounded(med),
            "threshold_ratio": f">= {T.UPDATE_RATIO_HIGH}", "usual_max_lr": usual,
            "extreme_ratio": f">= {T.UPDATE_RATIO_EXTREME} fires without a failure",
            "failure": failed or (["one-batch fit blew up"] if fit_blew_up else []),
        }  # fmt: skip
        if fit:
            ev["one_batch_fit_loss"] = [
                rounded(fit.get("initial_loss")),
                rounded(fit.get("final_loss")),
            ]
        conf = 0.9 if (finite(med) and med >= T.UPDATE_RATIO_HIGH and failed) else 0.7
        title = (
            f"lr {lr:g} is too high for {opt}: one step moves the weights by "
            f"{ratio_text(med)} of their norm" if finite(med) else f"lr {lr:g} is above the usual "
            f"range for {opt} (≤ {usual:g}) and the run diverged"
        )  # fmt: skip
        out.append(
            Finding(
                Code.LR_TOO_HIGH,
                Severity.WARNING,
                title,
                ev,
                f"--lr {suggest_lr(lr, med, usual)}",
                conf,
            )
        )
    progress = loss_progress(run)
    low = finite(med) and med <= T.UPDATE_RATIO_LOW
    slow = (progress is not None and progress < T.LOW_PROGRESS) or (fit and not fit.get("fitted"))
    if low and slow and not high:
        ev = {
            "lr": lr, "optimizer": opt, "update_ratio_median": rounded(med),
            "threshold_ratio": f"<= {T.UPDATE_RATIO_LOW}",
            "loss_progress": rounded(progress), "threshold_progress": f"< {T.LOW_PROGRESS}",
            "one_batch_fitted": fit.get("fitted"),
            "one_batch_fit_loss": [rounded(fit.get("initial_loss")), rounded(fit.get("final_loss"))],
        }  # fmt: skip
        out.append(
            Finding(
                Code.LR_TOO_LOW, Severity.WARNING,
                f"lr {lr:g} is too low: one step moves the weights by {ratio_text(med)} of their norm "
                f"and training removed only {ratio_text(progress)} of the baseline loss",
                ev, f"--lr {suggest_lr(lr, med)}", 0.85 if not fit.get("fitted") else 0.7,
            )
        )  # fmt: skip
    if not out:
        out += unannealed(run)
    return out


def unannealed(run: RunFolder) -> list[Finding]:
    """Validation accuracy that swings between late epochs while the lr never came down: the
    lr is too high to settle (a schedule that anneals fixes it; one-cycle and cosine do)."""
    va, lrs = column(run, "val_acc"), column(run, "lr")
    if len(va) < 4 or not lrs or diverged(run):
        return []
    late = va[len(va) // 2 - 1 :]  # the second half, with the epoch before it
    drop = max(a - b for a, b in zip(late, late[1:], strict=False))
    share = lrs[-1] / max(lrs)
    if drop < T.VAL_SWING or share < T.UNANNEALED_LR_SHARE:
        return []
    return [
        Finding(
            Code.LR_TOO_HIGH, Severity.WARNING,
            f"validation accuracy fell {drop:.0%} between late epochs while the lr stayed at "
            f"{share:.0%} of its peak ({lrs[-1]:.3g}): too high to settle",
            {"largest_late_drop": rounded(drop), "threshold_drop": f">= {T.VAL_SWING}",
             "last_lr_over_peak": rounded(share), "threshold_lr": f">= {T.UNANNEALED_LR_SHARE}",
             "schedule": run.opt("optim", "schedule")},
            "--schedule cosine (or onecycle): the lr must come down for the weights to settle",
            0.6,
        )
    ]  # fmt: skip


def suggest_lr(lr: float, ratio: float | None, usual_max: float | None = None) -> str:
    """The lr that puts the first step at the healthy runs' update ratio, rounded to 1 or 3 in
    its decade (the step scales linearly with the lr for SGD, and near enough for Adam).
    Unmeasured: a tenth of the lr, and at most a tenth of the optimizer's usual maximum (lr
    1000 with SGD gets 0.1, not 100, which would diverge too)."""
    if not finite(ratio) or ratio <= 0:
        return f"{min(lr, usual_max or lr) / 10:g}"
    target = lr * T.TARGET_UPDATE_RATIO / ratio
    exp = math.floor(math.log10(target))
    mant = target / 10**exp
    nice = min((1, 3, 10), key=lambda m: abs(math.log(mant / m)))
    return f"{nice * 10**exp:g}"


def stuck_at_chance(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    ev = stuck_evidence(run)
    if ev is None or diverged(run):
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
            f"{share:.0%} of the predictions are '{class_name(run, k)}', a class that is "
            f"{true_share:.0%} of the images",
            {"class": class_name(run, k), "prediction_share": rounded(share), "true_share": rounded(true_share),
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
    worst = min([r for r in [*ratios[:1], init] if finite(r)], default=None)
    if worst is not None and worst < T.VANISHING_RATIO:
        out.append(
            Finding(
                Code.VANISHING_GRADIENTS, Severity.WARNING,
                f"the first layer's gradient is {worst:.2g} of the last layer's",
                {"first_over_last": rounded(worst, 3), "threshold": f"< {T.VANISHING_RATIO}",
                 "first_epoch": rounded(ratios[0], 3) if ratios else None, "at_init": rounded(init, 3)},
                "--init kaiming (or a model with batch norm, e.g. vgg11_bn)", 0.8,
            )
        )  # fmt: skip
    norms = column(run, "grad_norm")
    if norms and norms[0] > 0:
        growth = max(norms) / norms[0]
        if growth >= T.EXPLODING_GROWTH or max(norms) >= T.EXPLODING_ABS:
            out.append(
                Finding(
                    Code.EXPLODING_GRADIENTS, Severity.WARNING,
                    f"the mean gradient norm reached {max(norms):.3g} ({growth:.3g}x its first "
                    "epoch's)",
                    {"first_epoch": rounded(norms[0]), "max": rounded(max(norms)),
                     "threshold": f"growth >= {T.EXPLODING_GROWTH:g}x or >= {T.EXPLODING_ABS:g}"},
                    f"--grad-clip 1.0 or --lr {peak_lr(run) / 10:g}", 0.8,
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
            {"dead_fraction": rounded(d["overall"]), "threshold": f">= {T.DEAD_RELU_FRACTION}",
             "worst_layers": dict(worst)},
            f"--lr {peak_lr(run) / 10:g} (dead units usually follow too large updates)", 0.8,
        )
    ]  # fmt: skip


def bad_init(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    if not probes or not probes.act_std:
        return []
    stds = [v for v in probes.act_std.values() if finite(v)]
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
                    {"output_std_over_first_layer_std": rounded(ratio, 3),
                     "threshold": f"<= {T.ACT_RATIO_LOW} or >= {T.ACT_RATIO_HIGH}",
                     "first_layer_std": rounded(stds[0]), "output_std": rounded(stds[-1]),
                     "init": run.opt("model", "init", "default")},
                    "--init kaiming", 0.85,
                )
            )  # fmt: skip
    if finite(probes.init_loss) and probes.init_loss > math.log(n) + T.INIT_LOSS_EXCESS:
        out.append(
            Finding(
                Code.BAD_INIT, Severity.WARNING,
                f"the loss at initialisation is {probes.init_loss:.3g}, ln C is {math.log(n):.3g}: "
                "the untrained outputs are overconfident",
                {"init_loss": rounded(probes.init_loss), "ln_C": rounded(math.log(n)),
                 "threshold": f"> ln C + {T.INIT_LOSS_EXCESS}",
                 "prior_bias_loss": rounded(probes.prior_bias_loss)},
                "--init kaiming (or a smaller init of the last layer)", 0.7,
            )
        )  # fmt: skip
    return out[:1]


def overfitting(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    """A generalisation gap: from the history (train accuracy far above validation while the
    validation loss rises), or measured on the best model itself (its accuracy on training
    images without augmentation vs on validation images: no dropout or averaging in between)."""
    tr, va, vl = column(run, "train_acc"), column(run, "val_acc"), column(run, "val_loss")
    if len(vl) < 2 or not tr or not va:
        return []
    gap, rise = tr[-1] - va[-1], vl[-1] / min(vl)
    maj = majority_rate(run) or 0.0
    widening = widening_gap(tr, va, column(run, "train_loss"))
    per_class = scratch_images_per_class(run)
    tiny = per_class is not None and per_class < T.OVERFIT_TINY_PER_CLASS
    from_history = gap >= T.OVERFIT_GAP and (rise >= T.OVERFIT_VAL_RISE or tiny)
    from_history = from_history or widening is not None
    measured = None
    if probes and probes.train_eval and probes.val:
        measured = balanced_accuracy(probes.train_eval) - balanced_accuracy(probes.val)
    from_model = measured is not None and measured >= T.OVERFIT_GAP
    # validation at chance is a collapse (or meaningless labels), not a model that learnt the
    # training set too well
    if not (from_history or from_model) or va[-1] <= maj + T.OVERFIT_ABOVE_CHANCE:
        return []
    n_train = sum((run.class_counts or {}).get("train") or [0])
    params = run.status.get("params")
    if from_model:
        title = (
            f"the best model scores {balanced_accuracy(probes.train_eval):.0%} on its training "
            f"images but {balanced_accuracy(probes.val):.0%} on validation images (mean recall)"
        )
    elif widening is not None:
        title = (
            f"train accuracy {tr[-1]:.0%} vs validation {va[-1]:.0%}: in the last "
            f"{T.OVERFIT_WINDOW} epochs the training loss fell {widening['train_loss_drop']:.0%} "
            f"while validation accuracy stayed under its best of "
            f"{widening['earlier_best_val']:.0%}"
        )
    elif rise >= T.OVERFIT_VAL_RISE:
        title = (
            f"train accuracy {tr[-1]:.0%} vs validation {va[-1]:.0%}, and the validation loss "
            f"ended {rise:.2g}x above its minimum"
        )
    else:
        title = (
            f"train accuracy {tr[-1]:.0%} vs validation {va[-1]:.0%} with {per_class:.0f} "
            "training images per class on a model trained from scratch"
        )
    return [
        Finding(
            Code.OVERFITTING, Severity.WARNING,
            title + f" ({n_train:,} training images" + (f", {params:,} parameters)" if params else ")"),
            {"train_acc": rounded(tr[-1]), "val_acc": rounded(va[-1]), "gap": rounded(gap),
             "val_loss_over_min": rounded(rise),
             "threshold_history": f"gap >= {T.OVERFIT_GAP} and loss rise >= {T.OVERFIT_VAL_RISE}",
             "widening_gap": widening,
             "threshold_widening": f"gap >= {T.OVERFIT_WIDE_GAP}, training loss down "
             f">= {T.OVERFIT_TRAIN_LOSS_DROP} over {T.OVERFIT_WINDOW} epochs, validation "
             "accuracy below its earlier best",
             "train_images_per_class": rounded(per_class),
             "threshold_tiny": f"gap >= {T.OVERFIT_GAP} and < {T.OVERFIT_TINY_PER_CLASS} images "
             "per class from scratch",
             "best_model_train_minus_val": rounded(measured),
             "threshold_best_model": f">= {T.OVERFIT_GAP}",
             "train_images": n_train, "parameters": params},
            "--augment strong --weight-decay 5e-3, or --pretrained --freeze-backbone, or more "
            "training images", 0.8,
        )
    ]  # fmt: skip


def scratch_images_per_class(run: RunFolder) -> float | None:
    """Mean training images per class of a run without pretrained weights, else None."""
    counts = (run.class_counts or {}).get("train") or []
    if not counts or run.opt("model", "pretrained", False) or run.opt("model", "weights"):
        return None
    return sum(counts) / len(counts)


def widening_gap(tr: list[float], va: list[float], tl: list[float]) -> dict[str, float] | None:
    """The last epochs' evidence that the gap keeps opening, or None: the training loss still
    falling over the window while validation accuracy never reaches its best from before it."""
    n = T.OVERFIT_WINDOW
    if min(len(tr), len(va), len(tl)) <= n or tr[-1] - va[-1] < T.OVERFIT_WIDE_GAP:
        return None
    drop, earlier_best = 1 - tl[-1] / max(tl[-1 - n], 1e-12), max(va[:-n])
    if drop < T.OVERFIT_TRAIN_LOSS_DROP or max(va[-n:]) >= earlier_best:
        return None
    return {
        "gap": rounded(tr[-1] - va[-1]), "train_loss_drop": rounded(drop),
        "earlier_best_val": rounded(earlier_best), "window_best_val": rounded(max(va[-n:])),
    }  # fmt: skip


def underfitting(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    tr, tl = column(run, "train_acc"), column(run, "train_loss")
    if len(tl) < 3 or stuck_evidence(run) or diverged(run):
        return []
    flat = abs(tl[-1] - tl[-3]) / max(tl[-3], 1e-12)
    if tr[-1] >= T.UNDERFIT_ACC or flat >= T.UNDERFIT_FLAT:
        return []
    return [
        Finding(
            Code.UNDERFITTING, Severity.WARNING,
            f"training accuracy plateaued at {tr[-1]:.0%} (loss changed {flat:.1%} in two epochs)",
            {"train_acc": rounded(tr[-1]), "threshold_acc": f"< {T.UNDERFIT_ACC}",
             "loss_change_2_epochs": rounded(flat), "threshold_flat": f"< {T.UNDERFIT_FLAT}"},
            "a larger model (--model), less regularisation (--weight-decay, --dropout), or a "
            "higher --lr", 0.6,
        )
    ]  # fmt: skip


def undertrained(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    va, vl = column(run, "val_acc"), column(run, "val_loss")
    if len(va) < 2 or len(vl) < 2 or not stopped_by_epoch_limit(run) or stuck_evidence(run):
        return []
    last, total = va[-1] - va[-2], va[-1] - va[0]
    if last < T.UNDERTRAINED_GAIN or last < T.UNDERTRAINED_SHARE * total or vl[-1] >= vl[-2]:
        return []
    tr = column(run, "train_acc")
    if tr and tr[-1] >= T.UNDERTRAINED_FITTED:
        # a last-epoch jump after a high-lr dip in validation, not a run short of epochs
        return []
    epochs = len(run.history)
    return [
        Finding(
            Code.UNDERTRAINED, Severity.WARNING,
            f"still improving when the epoch limit stopped it: +{last:.1%} validation accuracy "
            f"in the last epoch ({last / total:.0%} of the run's gain)",
            {"last_epoch_gain": rounded(last), "total_gain": rounded(total),
             "threshold": f">= {T.UNDERTRAINED_GAIN} and >= {T.UNDERTRAINED_SHARE} x total gain",
             "val_loss_last_two": [rounded(vl[-2]), rounded(vl[-1])], "epochs": epochs},
            f"cnnlab train --resume {run.path} --epochs {max(2 * epochs, epochs + 3)}", 0.75,
        )
    ]  # fmt: skip


def bn_mismatch(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    """Running statistics that do not describe the data (a measured accuracy gap), or
    statistics taken over so few images per batch that training-mode outputs are noise."""
    g = probes.bn_gap if probes else None
    if not g:
        return []
    batch = int(run.opt("data", "batch_size", 128))
    tr, va = column(run, "train_acc"), column(run, "val_acc")
    val_gap = va[-1] - tr[-1] if tr and va else 0.0
    tiny = batch < T.BN_MIN_BATCH and (
        abs(g["gap"]) >= T.BN_TINY_BATCH_GAP or val_gap >= T.BN_TINY_BATCH_VAL_GAP
    )
    if g["gap"] < T.BN_GAP and not tiny:
        return []
    steps = (steps_per_epoch(run) or 0) * len(run.history)
    hint: tuple[Code, ...] = ()
    if batch < T.BN_MIN_BATCH:
        fix = f"--batch-size 32 (BatchNorm needs batches of {T.BN_MIN_BATCH} or more)"
        title = (
            f"BatchNorm normalises over batches of {batch} images: training-mode outputs are "
            f"noise ({g['batch_stats_acc']:.0%} accuracy with batch statistics, "
            f"{g['eval_acc']:.0%} with running statistics; validation {val_gap:+.0%} vs training)"
        )
    else:
        title = (
            f"BatchNorm's running statistics do not fit the data: {g['eval_acc']:.0%} accuracy "
            f"in inference mode vs {g['batch_stats_acc']:.0%} with batch statistics"
        )
        if run.opt("model", "pretrained", False) and not run.opt("model", "freeze_backbone"):
            fix = "--bn-eval (keep the pretrained BatchNorm statistics)"
        else:
            fix = f"more steps: cnnlab train --resume {run.path} --epochs {2 * len(run.history)}"
            hint = (Code.UNDERTRAINED,)
    return [
        Finding(
            Code.BN_MISMATCH, Severity.WARNING, title,
            {"eval_acc": rounded(g["eval_acc"]), "batch_stats_acc": rounded(g["batch_stats_acc"]),
             "gap": rounded(g["gap"]), "threshold": f">= {T.BN_GAP}", "batch_size": batch,
             "threshold_batch": f"< {T.BN_MIN_BATCH} with |gap| >= {T.BN_TINY_BATCH_GAP} or "
             f"val - train accuracy >= {T.BN_TINY_BATCH_VAL_GAP}",
             "val_minus_train_acc": rounded(val_gap), "optimizer_steps": steps},
            fix, 0.8, explained_by=hint,
        )
    ]  # fmt: skip


def weight_decay(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    wd, lr, opt = (
        float(run.opt("optim", "weight_decay", 0)),
        peak_lr(run),
        run.opt("optim", "optimizer", "sgd"),
    )
    shrink = wd if opt == "adam" else lr * wd
    limit = T.ADAM_L2_MAX if opt == "adam" else T.DECAY_PER_STEP
    # a usual weight decay times an unusual lr is the lr's problem (learning_rate reports it)
    usual = {"sgd": T.WD_USUAL_SGD, "adamw": T.WD_USUAL_ADAMW}.get(opt, 0.0)
    if shrink < limit or wd <= usual:
        return []
    failed = training_failures(run)
    progress = loss_progress(run)
    weak = failed or (progress is not None and progress < 0.5)
    return [
        Finding(
            Code.WEIGHT_DECAY_TOO_HIGH, Severity.WARNING if weak else Severity.INFO,
            f"weight decay {wd:g} shrinks the weights by {shrink:.2g} per step ({opt}, lr {lr:g})",
            {"weight_decay": wd, "lr": lr, "shrink_per_step": rounded(shrink),
             "threshold": f">= {limit:g}", "loss_progress": rounded(progress)},
            "--weight-decay 5e-4", 0.75 if weak else 0.5,
        )
    ]  # fmt: skip


def frozen_random_backbone(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    m = (run.config or {}).get("model") or {}
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
    divergence,
    learning_rate,
    stuck_at_chance,
    predicts_one_class,
    gradients,
    dead_relu,
    bad_init,
    overfitting,
    underfitting,
    undertrained,
    D.class_imbalance,
    D.label_noise,
    bn_mismatch,
    D.input_not_normalized,
    D.data_leakage,
    D.val_above_train,
    weight_decay,
    frozen_random_backbone,
)


def evaluate_rules(run: RunFolder, probes: ProbeResults | None) -> list[Finding]:
    """Every rule, then the elimination rule that needs the others' verdicts."""
    found = [f for rule in ALL_RULES for f in rule(run, probes)]
    if not any(f.code is Code.LABEL_NOISE for f in found):
        found += D.labels_without_signal(run, found, probes)
    return found
