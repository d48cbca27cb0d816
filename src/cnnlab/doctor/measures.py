"""Pure measures on a run folder's history that several rules share: the baseline loss, the
majority-class rate, optimizer steps, whether the run diverged or learnt nothing."""

from __future__ import annotations

import math
from typing import Any

from cnnlab.doctor import thresholds as T
from cnnlab.doctor.evidence import RunFolder


def finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def column(run: RunFolder, key: str) -> list[float]:
    return [h[key] for h in run.history if finite(h.get(key))]


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


def class_name(run: RunFolder, k: int) -> str:
    return run.classes[k] if run.classes and k < len(run.classes) else str(k)


def peak_lr(run: RunFolder) -> float:
    return float(run.opt("optim", "lr", 0.1))


def stopped_by_epoch_limit(run: RunFolder) -> bool:
    return run.status.get("status") == "finished" and str(
        run.status.get("stop_reason", "")
    ).startswith("max epochs")


def diverged(run: RunFolder) -> bool:
    """NaN/Inf in the history or the test loss (finite training can hide exploded weights)."""
    nonfinite = any(
        not finite(h.get(k)) for h in run.history for k in ("train_loss", "val_loss") if k in h
    )
    test_loss = (run.test or {}).get("loss")
    nonfinite = nonfinite or (test_loss is not None and not finite(test_loss))
    return run.status.get("status") == "diverged" or run.divergence is not None or nonfinite


def stuck_evidence(run: RunFolder) -> dict[str, Any] | None:
    """Evidence that the run learnt nothing beyond the class prior, or None."""
    base, maj = baseline_loss(run), majority_rate(run)
    losses, accs = column(run, "train_loss"), column(run, "val_acc")
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


def loss_progress(run: RunFolder) -> float | None:
    """How much of the baseline loss training removed: 0 = nothing, 1 = all of it."""
    base, losses = baseline_loss(run), column(run, "train_loss")
    if base is None or not losses:
        return None
    return (base - min(losses)) / base


def training_failures(run: RunFolder, dead_fraction: float | None = None) -> list[str]:
    """Symptoms of an optimisation that did not work, as short phrases (empty: none)."""
    why = []
    if diverged(run):
        why.append("diverged")
    if stuck_evidence(run):
        why.append("stuck at the baseline loss")
    losses, val = column(run, "train_loss"), column(run, "val_loss")
    if len(losses) >= 2 and losses[-1] > 1.2 * min(losses):
        why.append(f"train loss ended {losses[-1] / min(losses):.1f}x above its minimum")
    base = baseline_loss(run)
    if base and val and max(val) > T.VAL_LOSS_BLOWUP * base:
        why.append(f"validation loss reached {max(val):.3g} ({max(val) / base:.0f}x the baseline)")
    if dead_fraction is not None and dead_fraction >= T.DEAD_RELU_FRACTION:
        why.append(f"{dead_fraction:.0%} of the ReLU channels dead")
    return why


def balanced_accuracy(acc: dict[str, Any]) -> float:
    """Mean recall over the classes present (a probe's accuracy dict): unlike accuracy it does
    not move when two splits have different class priors."""
    recalls = [r for r in acc.get("recall", []) if r is not None]
    return sum(recalls) / len(recalls) if recalls else acc["accuracy"]


def rounded(v: Any, digits: int = 4) -> Any:
    return float(f"{v:.{digits}g}") if finite(v) else v


def ratio_text(v: Any) -> str:
    if not finite(v):
        return "?"
    return f"{v:.3g}x" if v >= 1 else f"{100 * v:.3g}%"
