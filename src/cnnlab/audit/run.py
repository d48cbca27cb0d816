"""The audit inside `cnnlab train`: the run's own files, splits and pixel cache, before training.

    audited = audit_for_run(bundle, "fast", log=print)  # None: off, or data that is not files
    audited.write(run_dir)                              # audit.json (+ audit.png)

`data.audit` chooses the mode: `fast` (the default: exact and perceptual-hash duplicates, inside
and across splits, on pixels the scan already cached), `full` (everything `cnnlab audit` checks,
with EfficientNet-Lite0 embeddings of the cached pixels) or `off`. The console gets one warning
line per finding code that needs attention (error or warning severity) with its counts and the
fix; a clean data set gets none. The built-in Fashion-MNIST is not audited here: its copies are
known and the same for everyone (`cnnlab audit` lists them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.audit.core import AuditMode, audit_source, write_outputs
from cnnlab.audit.findings import AuditReport, Code, Finding, Severity
from cnnlab.audit.source import AuditData, from_folder_data
from cnnlab.errors import ConfigError, message_of

OFF = "off"
WHERE = "audit.json in the run folder"


@dataclass
class RunAudit:
    """An audit of a run's data, written into the run folder once the folder is kept."""

    report: AuditReport
    source: AuditData

    def write(self, run_dir: Path) -> None:
        write_outputs(self.report, self.source, Path(run_dir))


def audit_for_run(
    bundle: Any,
    mode: str,
    *,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> RunAudit | None:
    """Audit a DataBundle's image folder or CSV as split for this run; None when `mode` is
    "off" or the bundle holds no files (Fashion-MNIST, a user's own datasets)."""
    if mode == OFF or getattr(bundle, "folder", None) is None:
        return None
    mode = AuditMode(mode)
    src = from_folder_data(bundle.folder)
    embedder = None
    if mode is AuditMode.FULL:
        from cnnlab.audit.embed import ModelEmbedder
        from cnnlab.data.cache import default_cache_dir

        try:
            embedder = ModelEmbedder()
        except ConfigError as e:  # its fix names `cnnlab audit`'s option; this is training
            what = message_of(e).split("; install")[0]
            raise ConfigError(f"{what}; install them, or train with --audit fast") from None
        cache_dir = cache_dir or default_cache_dir()
    report = audit_source(src, mode=mode, embedder=embedder, cache_dir=cache_dir, log=log)
    for line in warning_lines(report):
        log(line)
    return RunAudit(report, src)


def warning_lines(report: AuditReport, where: str = WHERE) -> list[str]:
    """One line per code with an error or warning finding, worst code first; [] when clean."""
    by: dict[Code, list[Finding]] = {}
    for f in report.findings:  # rank order: the first code seen is the worst
        if f.severity is not Severity.INFO:
            by.setdefault(f.code, []).append(f)
    return [f"warning: audit: {_line(code, fs, where)}" for code, fs in by.items()]


def _line(code: Code, fs: list[Finding], where: str) -> str:
    n = len(fs)
    files = sum(len(f.files) for f in fs)
    extra = _n(files - n, "extra copy", "extra copies")  # all but the one each fix keeps
    if code is Code.CROSS_SPLIT_DUPLICATE:
        exact = sum(f.evidence.get("kind") == "exact" for f in fs)
        splits = ", ".join(sorted({s for f in fs for s in f.splits}))
        return (
            f"{_n(n, 'image')} {_verb(n, 'appears', 'appear')} in more than one split ({exact} "
            f"exact, {n - exact} near; {files} files in {splits}): evaluation sees images the "
            f"model trained on, so its accuracy is inflated; fix: delete the {extra} (each "
            f"finding's rm command: {where})"
        )
    if code is Code.EXACT_DUPLICATE:
        return (
            f"{_n(n, 'image')} {_verb(n, 'is', 'are')} stored more than once in the same split "
            f"({extra}): they weigh double in training; fix: delete the {extra} (rm commands: "
            f"{where})"
        )
    if code is Code.PLACEHOLDER:
        return (
            f"{_n(n, 'placeholder graphic')} {_verb(n, 'appears', 'appear')} under different "
            f"labels ({files} files): they teach nothing; fix: delete them (rm commands: {where})"
        )
    if code is Code.CONFLICTING_LABELS:
        return (
            f"{_n(n, 'image')} {_verb(n, 'appears', 'appear')} with different labels ({files} "
            f"files); fix: move every copy into the right class and keep one ({where})"
        )
    first = fs[0]
    more = f" ({n} findings, {files} files; all in {where})" if n > 1 or files > 1 else ""
    return f"{code.value}: {first.title}{more}; fix: {first.fix}"


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _verb(count: int, one: str, many: str) -> str:
    return one if count == 1 else many
