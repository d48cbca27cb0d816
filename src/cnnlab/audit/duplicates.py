"""Exact and near duplicates, grouped, and the findings they make.

  exact    identical decoded pixels: equal `hashing.digest` of the cached pixels, confirmed on
           the full-resolution decode when the cache holds resized pixels
  near     a pair passing one of the rules below (`DupThresholds`):
             hash       perceptual-hash distance <= radius (best of: as is, mirrored, one side
                        centre-cropped) and the matching thumbnails' edge correlation
                        >= min_edge (align.edge_correlation)
             embedding  centred cosine of the pretrained embeddings >= cosine, and a window of
                        one image (whole, or cropped anywhere, mirrored or not) whose edges
                        match the other's: align.best_alignment >= align_edge

Images linked by exact or near pairs form a group (connected components). A group spanning
splits is a `cross_split_duplicate` (error: a validation or test image the model trained on);
inside one split it is an `exact_duplicate` or `near_duplicate`. A group whose copies carry
different labels is also a `placeholder` (a non-photo, e.g. an "image not found" card) or a
`conflicting_labels` finding.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cnnlab.audit.align import best_alignment, edge_correlations
from cnnlab.audit.findings import Code, Finding, Severity
from cnnlab.audit.neighbors import COMBOS, combo_distances, hash_candidates, similar_pairs

HOW = {(0, 0): "re-encoded or resized", (0, "m"): "mirrored", (1, 0): "centre-cropped"}
HOW.update({(2, 0): "centre-cropped", (0, 1): "centre-cropped", (0, 2): "centre-cropped"})
HELD_OUT = {"test": 0, "val": 1, "train": 2}  # which copy to keep: the most held-out one


@dataclass(frozen=True)
class DupThresholds:
    # Set on ants/bees with 72 injected copies, calibration seed 100, not a reported seed
    # (benchmarks/bench_audit.py --calibrate 100): copies vs the 110,143 other pairs.
    radius: int = 10  # bits of 64: no other pair was within 10 (3 within 12)
    min_edge: float = 0.90  # copies found by hash: >= 0.993; other pairs within 16 bits: <= 0.12
    cosine: float = 0.60  # centred cosine: copies >= 0.80; 43 other pairs >= 0.6, max 0.70
    align_edge: float = 0.60  # best crop/mirror alignment: copies >= 0.77; others <= 0.19
    align_per_image: int = 10  # at most this many alignments per image on average, closest first


@dataclass(frozen=True)
class Pair:
    i: int
    j: int
    exact: bool
    hamming: int | None = None
    how: str = ""
    edge: float | None = None  # edge correlation of the matched thumbnails
    cosine: float | None = None


def exact_groups(digests: Sequence[bytes]) -> list[list[int]]:
    """Indices sharing a digest, groups of two or more, in first-seen order."""
    by: dict[bytes, list[int]] = defaultdict(list)
    for i, d in enumerate(digests):
        by[d].append(i)
    return [g for g in by.values() if len(g) > 1]


def near_pairs(
    hashes: np.ndarray,
    mirrored: np.ndarray,
    thumbs: np.ndarray,
    t: DupThresholds,
    emb: np.ndarray | None = None,
    gray: Callable[[int], Image.Image] | None = None,
) -> list[Pair]:
    """Pairs passing a near-duplicate rule.

    `emb` (N, D) from neighbors.normalize and `gray(i)` (image i in grey levels, for the
    alignment search) turn on the embedding rule.
    """
    out = []
    cand = hash_candidates(hashes, mirrored, t.radius)
    for s in range(0, len(cand), 1 << 14):  # in blocks: Fashion-MNIST has ~10^6 candidates
        out += _hash_rule(cand[s : s + (1 << 14)], hashes, mirrored, thumbs, t)
    if emb is None or gray is None:
        return out
    found = {(p.i, p.j) for p in out}
    cand = similar_pairs(emb, t.cosine)
    cos = np.einsum("pd,pd->p", emb[cand[:, 0]], emb[cand[:, 1]])
    # In a set of look-alikes (one product shot many times) most pairs pass the cosine: align
    # only the closest ones, a bounded number per image.
    cand = cand[np.argsort(-cos, kind="stable")][: t.align_per_image * len(emb)]
    for a, b in cand.tolist():
        if (a, b) in found:
            continue
        al = best_alignment(gray(a), gray(b))
        if al.edge >= t.align_edge:
            d = combo_distances(hashes, mirrored, np.array([a]), np.array([b])).min()
            out.append(Pair(a, b, False, int(d), al.describe(), al.edge, float(emb[a] @ emb[b])))
    return out


def _hash_rule(
    cand: np.ndarray, hashes: np.ndarray, mirrored: np.ndarray, thumbs: np.ndarray, t: DupThresholds
) -> list[Pair]:
    """The candidates whose matched thumbnails (per the best hash comparison) share edges."""
    i, j = cand[:, 0], cand[:, 1]
    dist = combo_distances(hashes, mirrored, i, j)
    best = dist.argmin(axis=1)
    va = np.array([a for a, _ in COMBOS])[best]
    vb = np.array([0 if b == "m" else b for _, b in COMBOS])[best]
    ta, tb = thumbs[i, va], thumbs[j, vb].copy()
    flip = np.array([b == "m" for _, b in COMBOS])[best]
    tb[flip] = tb[flip][:, :, ::-1]
    e = edge_correlations(ta, tb)
    return [
        Pair(int(i[p]), int(j[p]), False, int(dist[p, best[p]]), HOW[COMBOS[best[p]]], float(e[p]))
        for p in np.flatnonzero(e >= t.min_edge)
    ]


def components(n: int, groups: list[list[int]], pairs: list[Pair]) -> list[list[int]]:
    """Connected components (size >= 2) of the exact groups and near pairs, union-find."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for g in groups:
        for x in g[1:]:
            parent[find(x)] = find(g[0])
    for p in pairs:
        parent[find(p.j)] = find(p.i)
    comps: dict[int, list[int]] = defaultdict(list)
    for x in {x for g in groups for x in g} | {x for p in pairs for x in (p.i, p.j)}:
        comps[find(x)].append(x)
    return sorted((sorted(c) for c in comps.values()), key=lambda c: c[0])


@dataclass
class DupContext:
    """What duplicate findings need to know about the data."""

    rels: list[str]
    splits: list[str]
    labels: np.ndarray
    classes: list[str]
    root: str
    editable: bool  # False for built-in data: nothing to delete, only to know
    nonphoto: Callable[[int], bool]  # is image i a graphic rather than a photo (low entropy)?


def duplicate_findings(
    groups: list[list[int]], pairs: list[Pair], ctx: DupContext, t: DupThresholds
) -> list[Finding]:
    edges: dict[int, list[Pair]] = defaultdict(list)
    for g in groups:
        for x in g[1:]:
            edges[g[0]].append(Pair(g[0], x, True, 0, "identical pixels"))
    for p in pairs:
        edges[p.i].append(p)
    out = []
    for comp in components(len(ctx.rels), groups, pairs):
        members = set(comp)
        comp_pairs = [p for x in comp for p in edges.get(x, []) if p.j in members]
        out += _group_findings(comp, comp_pairs, ctx, t)
    return out


def _group_findings(
    comp: list[int], pairs: list[Pair], ctx: DupContext, t: DupThresholds
) -> list[Finding]:
    exact = all(p.exact for p in pairs)
    kind = "exact" if exact else "near"
    splits = {ctx.splits[x] for x in comp}
    labels = {int(ctx.labels[x]) for x in comp}
    keep = min(comp, key=lambda x: (HELD_OUT[ctx.splits[x]], ctx.rels[x]))
    order = [keep] + [x for x in comp if x != keep]
    files = tuple(ctx.rels[x] for x in order)
    fsplits = tuple(ctx.splits[x] for x in order)
    strength = max(_strength(p) for p in pairs)
    evidence = {
        "kind": kind,
        "copies": len(comp),
        "pairs": [_pair_evidence(p, ctx) for p in pairs[:20]],
        "rules": _rules(t),
    }
    out = []
    if len(splits) > 1:
        cross = [p for p in pairs if ctx.splits[p.i] != ctx.splits[p.j]]
        evidence_x = {**evidence, "pairs": [_pair_evidence(p, ctx) for p in cross[:20]]}
        out.append(
            Finding(Code.CROSS_SPLIT_DUPLICATE, Severity.ERROR,
                    _title(comp, pairs, ctx, kind, cross=True), files, fsplits, evidence_x,
                    _remove_fix(order[1:], ctx, why="evaluation sees an image the model trained on"),
                    score=0.5 + 0.5 * strength)
        )  # fmt: skip
    if len(labels) > 1:
        names = sorted(ctx.classes[c] for c in labels)
        graphic = sum(ctx.nonphoto(x) for x in comp) * 2 > len(comp)
        code = Code.PLACEHOLDER if graphic else Code.CONFLICTING_LABELS
        what = "a placeholder graphic" if graphic else "one image"
        title = f"{what} appears {len(comp)} times with different labels: {', '.join(names)}"
        fix = (
            _remove_fix(comp, ctx, why="a graphic, not a photo of any class")
            if graphic
            else _relabel_fix(order, ctx, names)
        )
        out.append(
            Finding(code, Severity.WARNING, title, files, fsplits,
                    {**evidence, "labels": names}, fix, score=strength)
        )  # fmt: skip
    elif len(splits) == 1:
        code = Code.EXACT_DUPLICATE if exact else Code.NEAR_DUPLICATE
        severity = Severity.WARNING if exact else Severity.INFO
        out.append(
            Finding(code, severity, _title(comp, pairs, ctx, kind, cross=False), files, fsplits,
                    evidence, _remove_fix(order[1:], ctx, why="one copy is enough"),
                    score=strength)
        )  # fmt: skip
    return out


def _strength(p: Pair) -> float:
    return 1.0 if p.exact else float(p.edge or 0.0)


def _pair_evidence(p: Pair, ctx: DupContext) -> dict:
    e = {
        "a": ctx.rels[p.i],
        "b": ctx.rels[p.j],
        "splits": [ctx.splits[p.i], ctx.splits[p.j]],
        "labels": [ctx.classes[ctx.labels[p.i]], ctx.classes[ctx.labels[p.j]]],
        "kind": "exact" if p.exact else "near",
        "match": p.how,
    }
    if not p.exact:
        e["hash_distance"] = p.hamming
        if p.edge is not None:
            e["edge_correlation"] = round(p.edge, 4)
        if p.cosine is not None:
            e["embedding_cosine"] = round(p.cosine, 4)
    return e


def _rules(t: DupThresholds) -> dict:
    return {
        "hash": f"distance <= {t.radius} of 64 bits and edge correlation >= {t.min_edge}",
        "embedding": f"centred cosine >= {t.cosine} and edge correlation of the best "
        f"crop/mirror alignment >= {t.align_edge}",
    }


def _title(comp: list[int], pairs: list[Pair], ctx: DupContext, kind: str, cross: bool) -> str:
    copy = "an exact copy" if kind == "exact" else f"a near-duplicate ({pairs[0].how})"
    if len(comp) == 2:
        a, b = comp
        return f"{ctx.rels[b]} ({ctx.splits[b]}) is {copy} of {ctx.rels[a]} ({ctx.splits[a]})"
    splits = sorted({ctx.splits[x] for x in comp}, key=lambda s: HELD_OUT[s])
    where = "across " + ", ".join(splits) if cross else f"in {splits[0]}"
    word = "identical images" if kind == "exact" else "near-duplicate images"
    return f"{len(comp)} {word} {where}"


def _remove_fix(drop: list[int], ctx: DupContext, why: str) -> str:
    if not ctx.editable:
        return (
            f"nothing to change in cnnlab: the built-in data set ships these copies ({why}); "
            "count them when comparing accuracies"
        )
    paths = " ".join(shlex.quote(f"{ctx.root}/{ctx.rels[x]}") for x in drop[:10])
    more = f" (and {len(drop) - 10} more, listed in files)" if len(drop) > 10 else ""
    return f"delete the extra copies ({why}): rm {paths}{more}"


def _relabel_fix(order: list[int], ctx: DupContext, names: list[str]) -> str:
    if not ctx.editable:
        return "nothing to change in cnnlab: the built-in data set ships these labels"
    return (
        f"decide which of {', '.join(names)} is right, move every copy into that class, then "
        "delete all but one copy"
    )
