"""Findings about the data set as a whole, and about single images in embedding space:
class imbalance, the files the scan skipped, outliers."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cnnlab.audit.findings import Code, Finding, Severity
from cnnlab.data import imaging
from cnnlab.data.scan import Skipped


@dataclass(frozen=True)
class DataThresholds:
    imbalance_ratio: float = 3.0  # largest / smallest training class; the doctor's rule too
    outlier_k: int = 5  # neighbours averaged for the outlier score
    # robust z-score (median, 1.4826 x MAD) of the distance to the own class AND to everything:
    # far from its class but close to another class is a label issue, not an outlier
    outlier_z: float = 5.0


def imbalance_finding(
    labels: np.ndarray, splits: list[str], classes: list[str], t: DataThresholds
) -> Finding | None:
    train = np.array([s == "train" for s in splits])
    counts = np.bincount(labels[train], minlength=len(classes))
    if len(classes) < 2 or counts.min() == 0:
        return None  # a class without training images is an error the data loader raises
    ratio = float(counts.max() / counts.min())
    if ratio < t.imbalance_ratio:
        return None
    hi, lo = int(counts.argmax()), int(counts.argmin())
    return Finding(
        code=Code.CLASS_IMBALANCE,
        severity=Severity.WARNING,
        title=f"training classes are imbalanced {ratio:.1f}:1 "
        f"('{classes[hi]}' {counts[hi]}, '{classes[lo]}' {counts[lo]})",
        evidence={
            "train_counts": {c: int(n) for c, n in zip(classes, counts, strict=True)},
            "ratio": round(ratio, 3),
            "threshold": t.imbalance_ratio,
            "class_weights": {
                c: round(float(counts.sum() / (len(classes) * n)), 4)
                for c, n in zip(classes, counts, strict=True)
            },
        },
        fix="--balance weights (class-weighted loss) or --balance sampler (balanced batches)",
        score=min(ratio / 100.0, 1.0),
    )


def skipped_findings(skipped: list[Skipped], rel: Callable[[str], str]) -> list[Finding]:
    """One finding per reason: broken images (warning) and other passed-over files (info)."""
    by: dict[str, list[Skipped]] = defaultdict(list)
    for s in skipped:
        by[s.reason].append(s)
    out = []
    for reason, items in sorted(by.items()):
        broken = reason in imaging.BAD_IMAGE_REASONS
        desc = imaging.REASONS.get(reason, reason)
        files = tuple(rel(s.path) for s in sorted(items))
        out.append(
            Finding(
                code=Code.CORRUPT_FILE if broken else Code.SKIPPED_FILE,
                severity=Severity.WARNING if broken else Severity.INFO,
                title=f"{len(items)} file{'s' if len(items) > 1 else ''} skipped: {desc}",
                files=files,
                splits=("",) * len(files),
                evidence={
                    "reason": reason,
                    "count": len(items),
                    "details": {rel(s.path): s.detail for s in sorted(items)[:50]},
                },
                fix=(
                    "re-export or delete them; training skips them (--on-bad-image fail stops "
                    "instead)"
                    if broken
                    else "nothing to do: they are not images of any class"
                ),
                score=len(items) / (len(items) + 10),
            )
        )
    return out


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD); nan where x is nan; 0 everywhere when MAD is 0."""
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros_like(x)
    med = np.median(x[ok])
    mad = 1.4826 * np.median(np.abs(x[ok] - med))
    return (x - med) / mad if mad > 0 else np.zeros_like(x)


def outlier_findings(
    class_sims: np.ndarray,
    all_sims: np.ndarray,
    rels: list[str],
    splits: list[str],
    labels: np.ndarray,
    classes: list[str],
    t: DataThresholds,
) -> list[Finding]:
    """Images far (in embedding space) from the images of their class and from all others.

    class_sims, all_sims: (N, k) cosines to the k nearest of the own class / of all images.
    """
    with np.errstate(invalid="ignore"):
        d_class = 1.0 - np.nanmean(class_sims, axis=1)
        d_all = 1.0 - np.nanmean(all_sims, axis=1)
    z_class, z_all = robust_z(d_class), robust_z(d_all)
    flag = (z_class >= t.outlier_z) & (z_all >= t.outlier_z)
    per_class = Counter(int(c) for c in labels)
    out = []
    for i in np.flatnonzero(flag):
        out.append(
            Finding(
                code=Code.OUTLIER,
                severity=Severity.INFO,
                title=f"{rels[i]} is unlike the other '{classes[labels[i]]}' images "
                f"(and unlike every other image)",
                files=(rels[i],),
                splits=(splits[i],),
                evidence={
                    "distance_to_class": round(float(d_class[i]), 4),
                    "distance_to_all": round(float(d_all[i]), 4),
                    "z_class": round(float(z_class[i]), 2),
                    "z_all": round(float(z_all[i]), 2),
                    "threshold_z": t.outlier_z,
                    "neighbours": t.outlier_k,
                    "class_size": per_class[int(labels[i])],
                    "measure": "1 - mean centred cosine to the k nearest embeddings",
                },
                fix="look at it: delete it if it belongs to no class (a screenshot, a wrong "
                "download); keep it if it is a rare but real case",
                score=float(min(z_class[i], z_all[i]) / 100.0),
            )
        )
    return out
