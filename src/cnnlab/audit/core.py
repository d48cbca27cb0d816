"""`audit()`: everything a data set can be checked for before it costs a training run.

    report = audit("photos/")                          # full: duplicates, labels, outliers, ...
    report = audit("photos/", mode="fast")             # exact + hash duplicates, cross-split
    report = audit(None)                               # the built-in Fashion-MNIST
    report = audit_source(from_folder_data(data))      # inside a run: its own scan and cache

One pass over the cached pixels (threads) computes each image's digest, thumbnails and pixel
statistics; the perceptual hashes come from the thumbnails in one batched DCT. The full mode then
embeds every image (pretrained EfficientNet-Lite0, cached on disk by content), runs the k-fold
linear probe for confident learning and the outlier search on the same embeddings, and adds the
file-header and data-set checks.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab import fsio
from cnnlab.audit import hashing
from cnnlab.audit.datachecks import (
    DataThresholds,
    imbalance_finding,
    outlier_findings,
    skipped_findings,
)
from cnnlab.audit.duplicates import (
    DupContext,
    DupThresholds,
    Pair,
    duplicate_findings,
    exact_groups,
    near_pairs,
)
from cnnlab.audit.embed import DEFAULT_MODEL, Embedder, ModelEmbedder, embed_all
from cnnlab.audit.findings import AuditReport, Check, Code, Finding
from cnnlab.audit.labels import confident_learning, label_findings, out_of_fold_probs
from cnnlab.audit.neighbors import class_neighbors, normalize
from cnnlab.audit.properties import STATS, Thresholds, headers_for, pixel_stats, property_findings
from cnnlab.audit.sheet import write_sheet
from cnnlab.audit.source import (
    BUILTIN_NAMES,
    AuditData,
    fashion_mnist_source,
    folder_source,
)
from cnnlab.config import DataConfig, TrainConfig
from cnnlab.data import imaging
from cnnlab.data.cache import default_cache_dir
from cnnlab.errors import unknown

_EXPLAINS = (Code.PLACEHOLDER, Code.CONFLICTING_LABELS)
PROBE_VERSION = 1  # bump when the probe's arithmetic changes: cached probabilities are stale


class AuditMode(str, enum.Enum):
    FULL = "full"
    FAST = "fast"  # exact + perceptual-hash duplicates and cross-split only: cheap enough for
    # every `cnnlab train` on folder data


@dataclass(frozen=True)
class AuditThresholds:
    duplicates: DupThresholds = field(default_factory=DupThresholds)
    properties: Thresholds = field(default_factory=Thresholds)
    data: DataThresholds = field(default_factory=DataThresholds)
    folds: int = 5  # k of the k-fold probe: each probe sees 80% of the images
    # L2 on standardised features; 1e-3..10 all put 20-23 of 27 flips in the top 2% on the
    # calibration seeds 100-102 (bench_audit.py --calibrate-labels), 1 the most
    probe_weight_decay: float = 1.0


@dataclass
class Measured:
    digests: list[bytes]  # per image: names its cached pixels
    thumbs: np.ndarray  # (N, len(CROPS), 32, 32) uint8
    hashes: np.ndarray  # (N, len(CROPS)) uint64
    mirrored: np.ndarray  # (N,) uint64, hash of the mirrored whole image
    stats: np.ndarray | None  # (N, len(STATS)) in the full mode


def audit(
    data: str | os.PathLike | None = None,
    *,
    mode: str | AuditMode = AuditMode.FULL,
    embeddings: bool = True,
    out_dir: str | os.PathLike | None = None,
    # `cnnlab train`'s own defaults: a plain audit checks the splits a plain run trains on
    val_fraction: float = DataConfig.val_fraction,
    test_fraction: float = DataConfig.test_fraction,
    seed: int = TrainConfig.seed,
    manifest: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    embedder: Embedder | None = None,
    thresholds: AuditThresholds | None = None,
    log: Callable[[str], None] = print,
) -> AuditReport:
    """Audit what `cnnlab train --data DATA` would train on, with the same split options.

    `data`: an image folder, a CSV manifest, or None / "fashion-mnist" for the built-in set.
    `out_dir`: where audit.json and audit.png go (nothing is written when None).
    """
    mode = _mode(mode)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if mode is AuditMode.FULL and embeddings and embedder is None:
        embedder = ModelEmbedder(DEFAULT_MODEL)  # fails early, before any scan, if no weights
    if mode is AuditMode.FAST or not embeddings:
        embedder = None
    if data is None or (str(data).lower() in BUILTIN_NAMES and not Path(data).exists()):
        src = fashion_mnist_source(data_dir, val_fraction=val_fraction, seed=seed)
    else:
        spec = embedder.preprocess if embedder is not None else _default_spec()
        src = folder_source(
            data, spec=spec, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
            manifest=manifest, cache_dir=cache, log=log,
        )  # fmt: skip
    return audit_source(
        src, mode=mode, embedder=embedder, cache_dir=cache, threads=threads,
        thresholds=thresholds, out_dir=out_dir, log=log,
    )  # fmt: skip


def audit_source(
    src: AuditData,
    *,
    mode: str | AuditMode = AuditMode.FULL,
    embedder: Embedder | None = None,
    cache_dir: Path | None = None,
    threads: int | None = None,
    thresholds: AuditThresholds | None = None,
    out_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> AuditReport:
    """Audit images already found and split (see source.py); `embedder` None: no embeddings."""
    mode = _mode(mode)
    t = thresholds or AuditThresholds()
    full = mode is AuditMode.FULL
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    m = measure(src, full=full, threads=threads)
    timings["measure"] = time.perf_counter() - clock
    checks: dict[str, Check] = {}
    notes: list[str] = []
    ranking: list[str] = []
    emb = raw = None
    if embedder is not None and len(src):
        clock = time.perf_counter()
        keys = [d.hex() for d in m.digests]
        raw, cached = embed_all(src.pixels.get, keys, embedder, cache_dir, log=log)
        timings["embed"] = time.perf_counter() - clock
        notes.append(f"embeddings: {embedder.key}, {cached} of {len(src)} from the cache")
        emb = normalize(raw)
    clock = time.perf_counter()
    findings = _duplicates(src, m, emb, t.duplicates, checks)
    timings["duplicates"] = time.perf_counter() - clock
    if full:
        # An image already reported as a placeholder or with conflicting labels is explained:
        # its low self-confidence and its distance from its class say nothing new.
        explained = {r for f in findings if f.code in _EXPLAINS for r in f.files}
        more = _full_checks(src, m, emb, raw, embedder, cache_dir, t, checks, notes, ranking)
        findings += [
            f
            for f in more
            if not (f.code in (Code.LABEL_ISSUE, Code.OUTLIER) and f.files[0] in explained)
        ]
    else:
        for name in ("label_issue", "outlier", "image_properties", "file_properties"):
            checks[name] = Check.SKIPPED
        checks["skipped_files"] = checks["class_imbalance"] = Check.SKIPPED
    report = AuditReport(
        findings, src.summary(), checks, notes, timings=timings, label_ranking=ranking
    )
    if out_dir is not None:
        write_outputs(report, src, Path(out_dir))
    return report


def _mode(mode: str | AuditMode) -> AuditMode:
    try:
        return AuditMode(mode)
    except ValueError:
        raise unknown("audit mode", str(mode), [m.value for m in AuditMode]) from None


def _default_spec():
    from cnnlab.models import get_model_info

    return get_model_info(DEFAULT_MODEL).weights.preprocess  # Lite0's: a pack a run can share


def measure(src: AuditData, *, full: bool, threads: int | None = None) -> Measured:
    """Digest, thumbnails (and in the full mode pixel statistics) of every image, in threads."""
    n = len(src)

    def one(i: int) -> tuple[bytes, np.ndarray, np.ndarray | None]:
        a = src.pixels.get(i)
        g = hashing.gray(a)
        return hashing.digest(a), hashing.thumbnails(g), pixel_stats(a, g) if full else None

    def block(r: range) -> list[tuple[bytes, np.ndarray, np.ndarray | None]]:
        return [one(i) for i in r]

    blocks = [range(s, min(n, s + 256)) for s in range(0, n, 256)]
    with ThreadPoolExecutor(max_workers=threads or min(8, os.cpu_count() or 1)) as ex:
        rows = [r for b in ex.map(block, blocks) for r in b]
    thumbs = (
        np.stack([r[1] for r in rows])
        if rows
        else np.zeros((0, len(hashing.CROPS), hashing.THUMB, hashing.THUMB), np.uint8)
    )
    flat = thumbs.reshape(-1, hashing.THUMB, hashing.THUMB)
    h, mirrored = hashing.phash(flat)
    h = h.reshape(n, len(hashing.CROPS))
    mirrored = mirrored.reshape(n, len(hashing.CROPS))[:, 0]
    stats = np.stack([r[2] for r in rows]) if full and rows else None
    if full and not rows:
        stats = np.zeros((0, len(STATS)))
    return Measured([r[0] for r in rows], thumbs, h, mirrored, stats)


def confirm_exact(src: AuditData, groups: list[list[int]], pairs: list[Pair]) -> list[list[int]]:
    """Exact groups on full-resolution pixels, when the cache holds resized ones.

    Candidates: images whose cached pixels are equal, and near pairs that match perfectly
    (distance 0, correlation ~1): a large JPEG is decoded at a reduced scale for the cache
    (libjpeg's draft mode), so a lossless PNG of its pixels caches differently. Each
    candidate is decoded once at full resolution.
    """
    if src.native or src.paths is None:
        return groups
    cand = {i for g in groups for i in g}
    cand |= {x for p in pairs if p.hamming == 0 and (p.edge or 0) >= 0.99 for x in (p.i, p.j)}
    full: dict[bytes, list[int]] = {}
    for i in sorted(cand):
        try:
            key = hashing.digest(imaging.load_image(src.paths[i]))
        except imaging.ImageError:  # changed since the scan: leave it to the near search
            continue
        full.setdefault(key, []).append(i)
    return [g for g in full.values() if len(g) > 1]


def _duplicates(
    src: AuditData,
    m: Measured,
    emb: np.ndarray | None,
    t: DupThresholds,
    checks: dict[str, Check],
) -> list[Finding]:
    near = near_pairs(m.hashes, m.mirrored, m.thumbs, t, emb, gray=lambda i: _small_gray(src, i))
    groups = confirm_exact(src, exact_groups(m.digests), near)
    same = {i: k for k, g in enumerate(groups) for i in g}
    pairs = [p for p in near if same.get(p.i, -1) != same.get(p.j, -2)]
    checks["exact_duplicate"] = checks["near_duplicate_hash"] = Check.RAN
    checks["near_duplicate_embedding"] = Check.RAN if emb is not None else Check.SKIPPED
    multi = len(set(src.splits)) > 1
    checks["cross_split_duplicate"] = Check.RAN if multi else Check.NOT_APPLICABLE
    ctx = DupContext(
        rels=src.rels, splits=src.splits, labels=src.labels, classes=src.classes,
        root=src.root, editable=src.paths is not None,
        nonphoto=lambda i: _nonphoto(src.pixels.get(i)),
    )  # fmt: skip
    return duplicate_findings(groups, pairs, ctx, t)


def _small_gray(src: AuditData, i: int):
    """Image i in grey levels, shorter side at most 128 px: enough for 32 px thumbnails."""
    return hashing.at_most(hashing.gray(src.pixels.get(i)), 128)


def _nonphoto(a: np.ndarray) -> bool:
    """A graphic rather than a photo: few grey levels carry most of it."""
    s = pixel_stats(a, hashing.gray(a))
    return bool(s[STATS.index("entropy")] < 4.0 or s[STATS.index("flat")] > 0.4)


def _full_checks(
    src: AuditData,
    m: Measured,
    emb: np.ndarray | None,
    raw: np.ndarray | None,
    embedder: Embedder | None,
    cache_dir: Path | None,
    t: AuditThresholds,
    checks: dict[str, Check],
    notes: list[str],
    ranking: list[str],
) -> list[Finding]:
    """Properties, skipped files, imbalance and, with embeddings, label issues and outliers;
    fills `ranking` with every image, worst label first."""
    out: list[Finding] = []
    headers = headers_for(src.paths)
    out += property_findings(m.stats, headers, src.rels, src.splits, t.properties)
    checks["image_properties"] = Check.RAN
    checks["file_properties"] = Check.RAN if headers is not None else Check.NOT_APPLICABLE
    out += skipped_findings(src.skipped, src.rel)
    checks["skipped_files"] = Check.RAN
    imb = imbalance_finding(src.labels, src.splits, src.classes, t.data)
    out += [imb] if imb is not None else []
    checks["class_imbalance"] = Check.RAN
    if emb is None:
        checks["label_issue"] = checks["outlier"] = Check.SKIPPED
        notes.append("label issues and outliers need embeddings: not checked")
        return out
    counts = np.bincount(src.labels, minlength=len(src.classes))
    if (counts >= 2).sum() < 2:
        checks["label_issue"] = Check.NOT_APPLICABLE
    else:
        probs = _probe(raw, src, m, embedder, cache_dir, t)
        lq = confident_learning(probs, src.labels)
        lq.issues &= counts[src.labels] >= 2  # a class of one cannot be learned out of fold
        ranking[:] = [src.rels[i] for i in lq.ranking]
        method = (
            f"confident learning on {t.folds}-fold out-of-fold probabilities of a linear probe "
            f"on {embedder.key} embeddings"
        )
        out += label_findings(lq, src.rels, src.splits, src.labels, src.classes,
                              method=method, move=lambda i, new: _move_fix(src, i, new))  # fmt: skip
        checks["label_issue"] = Check.RAN
    k = t.data.outlier_k
    cs, _ = class_neighbors(emb, src.labels, k)
    alls, _ = class_neighbors(emb, np.zeros(len(src), dtype=np.int64), k)
    out += outlier_findings(cs, alls, src.rels, src.splits, src.labels, src.classes, t.data)
    checks["outlier"] = Check.RAN
    return out


def _probe(
    raw: np.ndarray,
    src: AuditData,
    m: Measured,
    embedder: Embedder,
    cache_dir: Path | None,
    t: AuditThresholds,
) -> np.ndarray:
    """Out-of-fold probabilities, cached by (embeddings' content, labels, probe settings)."""
    folds = int(min(t.folds, max(2, np.bincount(src.labels)[np.bincount(src.labels) > 0].min())))
    h = hashlib.sha1(f"{PROBE_VERSION}\0{embedder.key}\0{folds}\0{t.probe_weight_decay}".encode())
    for d in m.digests:
        h.update(d)
    h.update(np.ascontiguousarray(src.labels, dtype=np.int64).tobytes())
    path = cache_dir / "audit" / "probes" / f"{h.hexdigest()[:24]}.npy" if cache_dir else None
    if path is not None and path.is_file():
        try:
            probs = np.load(path)
            if probs.shape == (len(src), len(src.classes)):
                return probs
        except (OSError, ValueError):
            pass  # recompute
    probs = out_of_fold_probs(
        raw, src.labels, len(src.classes), folds=folds, weight_decay=t.probe_weight_decay
    )
    if path is not None:
        with contextlib.suppress(OSError):  # costs a recomputation next time, nothing else
            fsio.write_with(path, lambda tmp: np.save(tmp, probs))
    return probs


def _move_fix(src: AuditData, i: int, new: str) -> str:
    rel, given = src.rels[i], src.classes[src.labels[i]]
    if src.paths is None:
        return "nothing to change in cnnlab: the built-in data set ships this label"
    if src.layout == "csv":
        return f"if the label is wrong: set the label of {rel} to '{new}' in the CSV"
    parts = rel.split("/")
    k = 1 if src.layout == "split_dirs" else 0
    if len(parts) <= k + 1 or parts[k] != given:
        return f"if the label is wrong: move {rel} into the '{new}' class folder"
    dest = "/".join([*parts[:k], new, *parts[k + 1 : -1]])
    return (
        f"if the label is wrong: mv {shlex.quote(f'{src.root}/{rel}')} "
        f"{shlex.quote(f'{src.root}/{dest}')}/"
    )


def write_outputs(report: AuditReport, src: AuditData, out_dir: Path) -> None:
    """audit.json and, when a finding has images to show, the contact sheet audit.png."""
    index = {rel: i for i, rel in enumerate(src.rels)}

    def image(rel: str) -> np.ndarray | None:
        return src.pixels.get(index[rel]) if rel in index else None

    sheet = out_dir / "audit.png"
    if write_sheet(report.findings, image, sheet):
        report.sheet = str(sheet)
    fsio.write_json(out_dir / "audit.json", report.to_dict())
