"""What an audit found: `Finding`s with a fixed code vocabulary, ranked, in one `AuditReport`.

    report = audit("photos/")
    print(report.format())               # the console view, worst first
    report.to_dict()["findings"][0]      # {"code": "cross_split_duplicate", "severity": "error", ...}

`to_dict()` is exactly what audit.json holds: `{"findings": [...], "data": {...}, "checks": {...},
"counts": {...}}` with findings in rank order (severity, then score, then code). The codes are a
stable interface: other tools (the run doctor reads `cross_split_duplicate` as data leakage) and
tests depend on them.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cnnlab.severity import Severity

AUDIT_FORMAT_VERSION = 1


class Code(str, enum.Enum):
    """Every finding code; the order here breaks ties in the ranking."""

    CROSS_SPLIT_DUPLICATE = "cross_split_duplicate"
    PLACEHOLDER = "placeholder"
    CONFLICTING_LABELS = "conflicting_labels"
    LABEL_ISSUE = "label_issue"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    CORRUPT_FILE = "corrupt_file"
    CLASS_IMBALANCE = "class_imbalance"
    OUTLIER = "outlier"
    TINY = "tiny"
    ODD_SIZE = "odd_size"
    ODD_ASPECT_RATIO = "odd_aspect_ratio"
    DARK = "dark"
    LIGHT = "light"
    BLURRY = "blurry"
    LOW_INFORMATION = "low_information"
    GRAYSCALE_AS_RGB = "grayscale_as_rgb"
    UNUSUAL_MODE = "unusual_mode"
    EXIF_ROTATED = "exif_rotated"
    SKIPPED_FILE = "skipped_file"

    @property
    def order(self) -> int:
        return list(Code).index(self)


class Check(str, enum.Enum):
    """Outcome of one family of checks, reported in `AuditReport.checks`."""

    RAN = "ran"
    SKIPPED = "skipped"  # not asked for (fast mode, embeddings off)
    NOT_APPLICABLE = "not_applicable"  # nothing to check on this data (no files, one class)


@dataclass(frozen=True)
class Finding:
    code: Code
    severity: Severity
    title: str  # one line a person reads
    files: tuple[str, ...] = ()  # relative to the data root, worst first
    splits: tuple[str, ...] = ()  # the split of each file in `files`, same order
    evidence: dict[str, Any] = field(default_factory=dict)  # the numbers, with the thresholds
    fix: str = ""  # the option or command to change
    score: float = 0.0  # ranks findings of one severity: larger is worse

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "title": self.title,
            "files": list(self.files),
            "splits": list(self.splits),
            "evidence": self.evidence,
            "fix": self.fix,
            "score": round(float(self.score), 6),
        }


def rank(findings: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; within one severity the larger score first."""
    return sorted(findings, key=lambda f: (f.severity.rank, -f.score, f.code.order, f.files))


@dataclass
class AuditReport:
    findings: list[Finding]  # in rank order
    data: dict[str, Any]  # root, layout, classes, images per split, seed and fractions
    checks: dict[str, Check]  # check family -> ran / skipped / not applicable
    notes: list[str] = field(default_factory=list)  # why a check was skipped, cache use, timings
    sheet: str | None = None  # path of the contact sheet PNG, when one was written
    # seconds per stage; not in to_dict(), so audit.json is the same from run to run
    timings: dict[str, float] = field(default_factory=dict)
    # every image (relative path), lowest self-confidence in its label first, when label issues
    # were checked; not in to_dict() (as long as the data set)
    label_ranking: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.findings = rank(self.findings)

    def by_code(self, code: Code | str) -> list[Finding]:
        code = Code(code)
        return [f for f in self.findings if f.code is code]

    def counts(self) -> dict[str, int]:
        return dict(Counter(f.code.value for f in self.findings))

    @property
    def worst(self) -> Severity | None:
        return self.findings[0].severity if self.findings else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "version": AUDIT_FORMAT_VERSION,
            "data": self.data,
            "checks": {k: v.value for k, v in self.checks.items()},
            "counts": self.counts(),
            "notes": list(self.notes),
            "sheet": self.sheet,
        }

    def format(self, limit: int = 20, files_per_finding: int = 4) -> str:
        """The console view: a header, the `limit` worst findings, a count per code."""
        d = self.data
        split_counts = ", ".join(f"{s} {n}" for s, n in d.get("images", {}).items())
        lines = [
            f"audit of {d.get('root')} ({d.get('layout')}): {split_counts}; "
            f"{len(d.get('classes', []))} classes"
        ]
        if not self.findings:
            lines.append("no findings")
        for f in self.findings[:limit]:
            lines.append(f"{f.severity.value:<8} {f.code.value:<22} {f.title}")
            for rel, split in list(zip(f.files, f.splits, strict=False))[:files_per_finding]:
                lines.append(f"{'':<31} {split:<5} {rel}")
            if len(f.files) > files_per_finding:
                lines.append(f"{'':<31} ... and {len(f.files) - files_per_finding} more")
            if f.fix:
                lines.append(f"{'':<31} fix: {f.fix}")
        if len(self.findings) > limit:
            lines.append(f"... {len(self.findings) - limit} more findings (all in audit.json)")
        if self.findings:
            per_code = ", ".join(f"{c} {n}" for c, n in self.counts().items())
            lines.append(f"findings per code: {per_code}")
        skipped = [k for k, v in self.checks.items() if v is Check.SKIPPED]
        if skipped:
            lines.append(f"not checked: {', '.join(skipped)}")
        lines += self.notes
        if self.sheet:
            lines.append(f"contact sheet: {self.sheet}")
        return "\n".join(lines)
