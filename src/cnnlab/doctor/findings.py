"""What the doctor says: a fixed vocabulary of codes, findings with their evidence, and a report
that puts the root cause first with the symptoms it explains grouped under it.

The codes are a stable interface (doctor.json, `--json`, the experiment table); `RULES` is the
one-line rule behind each, shown in the README. Every threshold a rule uses is written into the
finding's `evidence` next to the measured value, so a reader can check the verdict.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from cnnlab.doctor import thresholds
from cnnlab.severity import Severity


class Code(str, enum.Enum):
    DIVERGED = "diverged"
    LR_TOO_HIGH = "lr_too_high"
    LR_TOO_LOW = "lr_too_low"
    STUCK_AT_CHANCE = "stuck_at_chance"
    PREDICTS_ONE_CLASS = "predicts_one_class"
    VANISHING_GRADIENTS = "vanishing_gradients"
    EXPLODING_GRADIENTS = "exploding_gradients"
    DEAD_RELU = "dead_relu"
    BAD_INIT = "bad_init"
    OVERFITTING = "overfitting"
    UNDERFITTING = "underfitting"
    UNDERTRAINED = "undertrained"
    CLASS_IMBALANCE = "class_imbalance"
    LABEL_NOISE = "label_noise"
    BN_MISMATCH = "bn_mismatch"
    INPUT_NOT_NORMALIZED = "input_not_normalized"
    DATA_LEAKAGE = "data_leakage"
    VAL_ABOVE_TRAIN = "val_above_train"
    WEIGHT_DECAY_TOO_HIGH = "weight_decay_too_high"
    FROZEN_RANDOM_BACKBONE = "frozen_random_backbone"


# The rule behind each code, one line each (the README's table). "baseline loss" is the loss of
# the best constant prediction: the entropy of the training class prior, ln C when balanced.
RULES: dict[Code, str] = {
    Code.DIVERGED: "the loss became NaN/Inf (run status `diverged`, divergence.json)",
    Code.LR_TOO_HIGH: "one optimizer step at the configured peak lr moves the weights by more "
    "than {UPDATE_RATIO_HIGH} of their norm (median over layers), or the run diverged at an lr "
    "above the usual range; and training failed (diverged, stuck, loss rose, validation loss "
    "above {VAL_LOSS_BLOWUP:g}x the baseline, half the ReLUs dead) or a one-batch fit blew up, "
    "or the step is {UPDATE_RATIO_EXTREME:g}x the weights or more; or validation accuracy falls "
    "{VAL_SWING:.0%} between two late epochs while the lr is still {UNANNEALED_LR_SHARE:.0%} of "
    "its peak",
    Code.LR_TOO_LOW: "one step moves the weights by less than {UPDATE_RATIO_LOW} of their norm, and "
    "training removed under {LOW_PROGRESS:.0%} of the baseline loss or a {OVERFIT_STEPS}-step fit "
    "of one batch failed",
    Code.STUCK_AT_CHANCE: "the final training loss is at least {STUCK_LOSS_FRACTION:.0%} of the "
    "baseline loss and the best validation accuracy is within {STUCK_ACC_MARGIN:.0%} of the "
    "majority-class rate",
    Code.PREDICTS_ONE_CLASS: "one class receives at least {ONE_CLASS_SHARE:.0%} of the "
    "predictions although it is under {ONE_CLASS_MAX_TRUE_SHARE:.0%} of the images",
    Code.VANISHING_GRADIENTS: "the first layer's gradient norm is under {VANISHING_RATIO} of the "
    "last layer's (first epoch, or at initialisation)",
    Code.EXPLODING_GRADIENTS: "the mean gradient norm grows {EXPLODING_GROWTH:g}x over the run or "
    "exceeds {EXPLODING_ABS:g}",
    Code.DEAD_RELU: "at least {DEAD_RELU_FRACTION:.0%} of the trained model's ReLU channels output "
    "zero for every image of a validation batch",
    Code.BAD_INIT: "at initialisation the output std is under {ACT_RATIO_LOW} or over "
    "{ACT_RATIO_HIGH:g} times the first layer's, or the initial loss exceeds ln C + "
    "{INIT_LOSS_EXCESS:g}",
    Code.OVERFITTING: "training accuracy exceeds validation accuracy by {OVERFIT_GAP:.0%} or more "
    "with the validation loss ending {OVERFIT_VAL_RISE}x its minimum or higher, or with under "
    "{OVERFIT_TINY_PER_CLASS} training images per class and no pretrained weights, or for the best "
    "model's mean recall on training vs validation images without augmentation; or by "
    "{OVERFIT_WIDE_GAP:.0%} or more while over the last {OVERFIT_WINDOW} epochs the training loss "
    "fell {OVERFIT_TRAIN_LOSS_DROP:.0%} or more and validation accuracy stayed below its earlier "
    "best; and validation accuracy is more than {OVERFIT_ABOVE_CHANCE:.0%} above the "
    "majority-class rate",
    Code.UNDERFITTING: "training accuracy stays under {UNDERFIT_ACC:.0%} with a flat training loss "
    "(under {UNDERFIT_FLAT:.0%} change over two epochs) although the run is not at chance",
    Code.UNDERTRAINED: "stopped by the epoch limit while still improving: the last epoch gained "
    "at least {UNDERTRAINED_GAIN:.0%} validation accuracy and {UNDERTRAINED_SHARE:.0%} of the "
    "run's total gain, the validation loss still fell, and training accuracy is under "
    "{UNDERTRAINED_FITTED:.0%} (a run that fits its training data has nothing left to learn)",
    Code.CLASS_IMBALANCE: "the largest training class is {IMBALANCE_RATIO:g}x the smallest or "
    "more; a warning when the smallest class's recall is under {MINORITY_RECALL_SHARE} x the "
    "mean recall and nothing rebalances",
    Code.LABEL_NOISE: "the trained model agrees with the training labels {NOISE_GAP:.0%} less "
    "often than with the validation labels (mean recall per class); or training accuracy reaches "
    "{MEMORISE_TRAIN_ACC:.0%} while validation stays at chance; or nothing is learnt in "
    "{LABEL_SIGNAL_MIN_STEPS} steps or more (at a mean lr of {LABEL_SIGNAL_LR_SHARE:.0%} of the "
    "peak or more) although the model fits one batch at a healthy step "
    "size and no other cause is found",
    Code.BN_MISMATCH: "BatchNorm in inference mode (running statistics) scores {BN_GAP:.0%} or "
    "more below the same images normalised with batch statistics, in batches of the training "
    "batch size; or batches under {BN_MIN_BATCH} images with the two modes {BN_TINY_BATCH_GAP:.0%} "
    "apart or validation {BN_TINY_BATCH_VAL_GAP:.0%} above training",
    Code.INPUT_NOT_NORMALIZED: "a channel of the preprocessed input has a mean beyond ±"
    "{INPUT_MEAN_MAX} or a std outside {INPUT_STD_LO}-{INPUT_STD_HI} (with pretrained weights, "
    "whose own statistics are the right ones, only a std over {INPUT_STD_RAW:g}: raw pixels)",
    Code.DATA_LEAKAGE: "at least {LEAK_FRACTION:.0%} of the validation or test images are copies "
    "of training images: exact pixel copies (the doctor's probe) or exact and near copies (the "
    "dataset audit's cross-split duplicates)",
    Code.VAL_ABOVE_TRAIN: "validation accuracy exceeds training accuracy by {VAL_ABOVE_GAP:.0%} or "
    "more: info when dropout, augmentation or the running training average explain it, a "
    "warning from {VAL_ABOVE_WARN:.0%} or when nothing does",
    Code.WEIGHT_DECAY_TOO_HIGH: "weight decay shrinks the weights by {DECAY_PER_STEP:g} or more "
    "per step (lr x weight decay for SGD/AdamW, weight decay >= {ADAM_L2_MAX} for Adam) and is "
    "above the usual values ({WD_USUAL_SGD:g} for SGD, {WD_USUAL_ADAMW:g} for AdamW); a "
    "warning when training also fails or removes under half the baseline loss",
    Code.FROZEN_RANDOM_BACKBONE: "the backbone is frozen but was never trained (no pretrained "
    "weights, no --weights file): only the head learns, on random features",
}
RULES = {code: text.format(**vars(thresholds)) for code, text in RULES.items()}


def rules_markdown() -> str:
    """The README's table: every code, whether it names a cause, and its rule."""
    rows = ["| code | kind | rule |", "|---|---|---|"]
    for code, text in RULES.items():
        kind = "cause" if code in CAUSES else "symptom"
        rows.append(f"| `{code.value}` | {kind} | {text} |")
    return "\n".join(rows)


# Root causes and the symptoms each can explain. A symptom present together with a cause that
# explains it is grouped under that cause instead of being listed as a rival diagnosis.
CAUSES: tuple[Code, ...] = (  # upstream first: the order breaks ties between causes
    Code.DATA_LEAKAGE,
    Code.INPUT_NOT_NORMALIZED,
    Code.LABEL_NOISE,
    Code.FROZEN_RANDOM_BACKBONE,
    Code.BAD_INIT,
    Code.LR_TOO_HIGH,
    Code.WEIGHT_DECAY_TOO_HIGH,
    Code.LR_TOO_LOW,
    Code.BN_MISMATCH,
    Code.CLASS_IMBALANCE,
    Code.OVERFITTING,
    Code.UNDERTRAINED,
)
_TRAINING_FAILS = {
    Code.DIVERGED, Code.STUCK_AT_CHANCE, Code.PREDICTS_ONE_CLASS, Code.UNDERFITTING,
    Code.DEAD_RELU, Code.EXPLODING_GRADIENTS, Code.VANISHING_GRADIENTS, Code.UNDERTRAINED,
}  # fmt: skip
EXPLAINS: dict[Code, set[Code]] = {
    Code.DATA_LEAKAGE: {Code.VAL_ABOVE_TRAIN},
    # raw-scale inputs blow up the first layer: its activation scale and step size follow
    Code.INPUT_NOT_NORMALIZED: _TRAINING_FAILS
    | {Code.LR_TOO_HIGH, Code.BN_MISMATCH, Code.BAD_INIT, Code.LR_TOO_LOW},
    Code.LABEL_NOISE: {
        Code.STUCK_AT_CHANCE,
        Code.PREDICTS_ONE_CLASS,
        Code.OVERFITTING,
        Code.UNDERFITTING,
        Code.VAL_ABOVE_TRAIN,
        Code.UNDERTRAINED,
        Code.BN_MISMATCH,
    },  # fmt: skip
    Code.FROZEN_RANDOM_BACKBONE: {
        Code.UNDERFITTING,
        Code.STUCK_AT_CHANCE,
        Code.PREDICTS_ONE_CLASS,
        Code.LR_TOO_LOW,
        Code.UNDERTRAINED,
    },  # fmt: skip
    Code.BAD_INIT: _TRAINING_FAILS | {Code.LR_TOO_LOW, Code.BN_MISMATCH},
    # an unstable run's train/val gap is not overfitting
    Code.LR_TOO_HIGH: _TRAINING_FAILS - {Code.VANISHING_GRADIENTS}
    | {Code.BN_MISMATCH, Code.OVERFITTING},
    Code.WEIGHT_DECAY_TOO_HIGH: _TRAINING_FAILS | {Code.LR_TOO_LOW, Code.OVERFITTING},
    Code.LR_TOO_LOW: {
        Code.STUCK_AT_CHANCE,
        Code.PREDICTS_ONE_CLASS,
        Code.UNDERFITTING,
        Code.UNDERTRAINED,
        Code.BN_MISMATCH,
    },  # fmt: skip
    Code.BN_MISMATCH: {
        Code.PREDICTS_ONE_CLASS,
        Code.OVERFITTING,
        Code.STUCK_AT_CHANCE,
        Code.VAL_ABOVE_TRAIN,
    },  # fmt: skip
    Code.CLASS_IMBALANCE: {
        Code.PREDICTS_ONE_CLASS,
        Code.STUCK_AT_CHANCE,
        Code.UNDERFITTING,
        Code.OVERFITTING,
    },  # fmt: skip
    Code.OVERFITTING: {Code.VAL_ABOVE_TRAIN},
    Code.UNDERTRAINED: {Code.UNDERFITTING, Code.BN_MISMATCH},
}


@dataclass
class Finding:
    code: Code
    severity: Severity
    title: str  # one sentence with the numbers
    evidence: dict[str, Any]  # measured values and the thresholds they were compared with
    fix: str  # the option(s) or command to change; "" when there is nothing to change
    confidence: float  # 0-1: how sure the rule is, from how many independent signals agree
    symptoms: list[Finding] = field(default_factory=list)  # findings this one explains
    caused_by: Code | None = None  # set on a symptom grouped under its cause
    # causes that can explain this finding in this run beyond `EXPLAINS` (e.g. a BatchNorm
    # mismatch after too few steps is explained by undertraining, not by the batch size)
    explained_by: tuple[Code, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "code": self.code.value,
            "severity": self.severity.value,
            "title": self.title,
            "evidence": self.evidence,
            "fix": self.fix,
            "confidence": round(self.confidence, 2),
        }
        if self.caused_by is not None:
            d["caused_by"] = self.caused_by.value
        if self.symptoms:
            d["symptoms"] = [s.to_dict() for s in self.symptoms]
        return d

    @property
    def is_problem(self) -> bool:
        return self.severity is not Severity.INFO


def rank(findings: list[Finding]) -> list[Finding]:
    """Group symptoms under the cause that explains them; roots in rank order.

    A symptom goes to the most upstream present cause (warning or error) that explains it; a
    cause can itself be explained by a more upstream one, and then it and its symptoms all go
    to that root. A root takes on the most severe severity of its group (the cause of an error
    is the error). Roots are ordered by severity, causes before unexplained symptoms, upstream
    causes first, then confidence."""
    causes = sorted(
        (f for f in findings if f.code in CAUSES and f.is_problem),
        key=lambda f: (CAUSES.index(f.code), -f.confidence),
    )

    def owner(f: Finding) -> Finding | None:
        for c in causes:
            if c is f:
                continue
            hinted = c.code in f.explained_by
            # otherwise only strictly more upstream causes adopt a cause: no cycles
            upstream = f.code not in CAUSES or CAUSES.index(c.code) < CAUSES.index(f.code)
            if hinted or (upstream and f.code in EXPLAINS[c.code]):
                return c
        return None

    owners = {id(f): owner(f) for f in findings}
    for f in findings:  # hints can close a cycle: cut it where it closes
        path, x = [], f
        while x is not None and all(x is not p for p in path):
            path.append(x)
            x = owners[id(x)]
        if x is not None:
            owners[id(path[-1])] = None

    def root_of(f: Finding) -> Finding:
        o = owners[id(f)]
        return f if o is None else root_of(o)

    roots: list[Finding] = []
    for f in findings:
        f.symptoms, f.caused_by = [], None
    for f in findings:
        r = root_of(f)
        if r is f:
            roots.append(f)
        else:
            f.caused_by = r.code
            r.symptoms.append(f)
    for r in roots:
        r.severity = min([r.severity, *(s.severity for s in r.symptoms)], key=lambda s: s.rank)
    return sorted(
        roots,
        key=lambda f: (
            f.severity.rank,
            0 if f.code in CAUSES else 1,
            CAUSES.index(f.code) if f.code in CAUSES else len(CAUSES),
            -f.confidence,
        ),
    )


@dataclass
class DoctorReport:
    run: str
    status: str | None
    findings: list[Finding]  # roots in rank order, symptoms nested
    probes: dict[str, Any] = field(default_factory=dict)  # raw probe measurements
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why

    @property
    def healthy(self) -> bool:
        return not any(f.is_problem for f in self.findings)

    @property
    def top(self) -> Finding | None:
        return self.findings[0] if self.findings and self.findings[0].is_problem else None

    def codes(self) -> list[str]:
        """Every code reported, roots and grouped symptoms, in rank order."""
        out: list[str] = []
        for f in self.findings:
            out += [f.code.value, *(s.code.value for s in f.symptoms)]
        return out

    def to_dict(self) -> dict[str, Any]:
        """doctor.json's object: strict JSON (a NaN or infinite measurement is the string
        'nan', 'inf' or '-inf', as JSON has no such numbers)."""
        return _strict_json(
            {
                "run": self.run,
                "status": self.status,
                "healthy": self.healthy,
                "diagnosis": self.top.code.value if self.top else None,
                "findings": [f.to_dict() for f in self.findings],
                "probes": self.probes,
                "notes": self.notes,
            }
        )

    def format(self, *, limit: int | None = None) -> str:
        """Console text: one block per root finding, its symptoms indented under it."""
        head = f"doctor: {self.run}" + (f" (status {self.status})" if self.status else "")
        if self.healthy:
            lines = [head, "  no problem found"]
        else:
            n = sum(f.is_problem for f in self.findings)
            lines = [head, f"  {n} problem{'s' if n != 1 else ''} found, root cause first:"]
        shown = self.findings if limit is None else self.findings[:limit]
        for f in shown:
            lines.append(f"  [{f.severity.value}] {f.code.value}: {f.title}")
            if f.fix:
                lines.append(f"      fix: {f.fix}")
            lines.append(f"      evidence: {_evidence_line(f.evidence)}")
            for s in f.symptoms:
                lines.append(f"      explains [{s.severity.value}] {s.code.value}: {s.title}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _strict_json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _strict_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_strict_json(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    return v


def _evidence_line(evidence: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(fmt(x) for x in v[:8]) + (", …" if len(v) > 8 else "") + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {fmt(x)}" for k, x in list(v.items())[:6]) + "}"
        return str(v)

    return "; ".join(f"{k} {fmt(v)}" for k, v in evidence.items())
