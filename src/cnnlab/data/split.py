"""Which files belong to which split and class: layout detection, the split, and its manifest.

Layouts (`detect_layout`):
  split_dirs     PATH/{train,val|valid|validation,test}/<class>/...   (val and test optional)
  class_folders  PATH/<class>/...                                     (split by `assign_splits`)
  csv            a CSV file with columns path,label[,split]; relative paths resolve against the
                 CSV's folder

The split is a pure function of (file list, fractions, seed): each file gets a rank from a hash of
(seed, relpath); within each class the lowest ranks go to val, the next to test, the rest to
train. Counts per class are exact (stratified), and adding one file moves at most a couple of
others between splits, because nobody else's rank changes.

A run writes the split as a manifest (split,path,label,size,mtime_ns); `diff_manifest` compares a
manifest with the folder as it is now (missing, modified and added files).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab import fsio
from cnnlab.data import imaging
from cnnlab.data.scan import Candidate, Skipped, walk
from cnnlab.errors import DataChangedError, DataError, RunError

SPLITS = ("train", "val", "test")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MANIFEST_FIELDS = ("split", "path", "label", "size", "mtime_ns")


@dataclass
class Discovery:
    layout: str
    root: Path  # what relpaths are relative to: the data folder, or the CSV's folder
    cands: list[Candidate]
    skipped: list[Skipped]
    classes: list[str]  # union of class folder names (or CSV labels), sorted
    # split -> class -> folder, for messages; split "" when the layout does not fix splits
    class_dirs: dict[str, dict[str, Path]] = field(default_factory=dict)
    split_dirs: dict[str, Path] = field(default_factory=dict)


def detect_layout(path: Path) -> str:
    if not path.exists():
        raise DataError(f"data path {path} does not exist; pass an image folder or a CSV file")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"data path {path} is a file; pass an image folder or a .csv manifest")
    names = {p.name.lower() for p in path.iterdir() if p.is_dir()}
    if "train" in names:
        return "split_dirs"
    if names & {"val", "valid", "validation", "test"}:
        raise DataError(f"{path} has val/ or test/ but no train/; add {path}/train/<class>/...")
    return "class_folders"


def discover(path: str | os.PathLike) -> Discovery:
    """Every candidate image with its class (and split when the layout fixes it)."""
    path = Path(path).absolute()
    layout = detect_layout(path)
    if layout == "csv":
        return _discover_csv(path)
    if layout == "split_dirs":
        return _discover_split_dirs(path)
    dirs, skipped = _top_level(path, "not inside a class folder")
    if not dirs:
        raise DataError(
            f"no class folders in {path}; put the images of each class in {path}/<class>/"
        )
    d = Discovery(layout, path, [], skipped, sorted(dirs))
    _add_classes(d, "", dirs)
    return d


def _discover_split_dirs(path: Path) -> Discovery:
    dirs, skipped = _top_level(path, "not a train/val/test folder")
    splits: dict[str, Path] = {}
    for name, folder in dirs.items():
        split = SPLIT_NAMES.get(name.lower())
        if split is None:
            skipped.append(Skipped(str(folder), "outside_layout", "not a train/val/test folder"))
        elif split in splits:
            raise DataError(
                f"{path} has both {splits[split].name}/ and {name}/; keep one validation folder"
            )
        else:
            splits[split] = folder
    d = Discovery("split_dirs", path, [], skipped, [], split_dirs=splits)
    classes: set[str] = set()
    for split, folder in sorted(splits.items()):
        class_dirs, skips = _top_level(folder, "not inside a class folder")
        d.skipped += skips
        classes |= set(class_dirs)
        _add_classes(d, split, class_dirs)
    d.classes = sorted(classes)
    return d


def _top_level(folder: Path, outside: str) -> tuple[dict[str, Path], list[Skipped]]:
    """Sub-folders of `folder` by name, and its loose files reported as skipped."""
    dirs: dict[str, Path] = {}
    skipped: list[Skipped] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        p = Path(entry.path)
        if imaging.is_hidden(entry.name):
            skipped.append(Skipped(str(p), "hidden", "hidden or system entry"))
        elif entry.is_dir():
            dirs[entry.name] = p
        elif (reason := imaging.extension_reason(entry.name)) is not None:
            skipped.append(Skipped(str(p), reason, f"extension {p.suffix or 'none'}"))
        else:
            skipped.append(Skipped(str(p), "outside_layout", outside))
    return dirs, skipped


def _add_classes(d: Discovery, split: str, class_dirs: dict[str, Path]) -> None:
    d.class_dirs[split] = class_dirs
    for label, folder in class_dirs.items():
        files, skips = walk(folder, d.root)
        d.skipped += skips
        d.cands += [
            Candidate(f, f.relative_to(d.root).as_posix(), label, split or None) for f in files
        ]


def _discover_csv(path: Path) -> Discovery:
    root = path.parent
    d = Discovery("csv", root, [], [], [])
    seen: dict[str, int] = {}
    labels: set[str] = set()
    for line, row in _csv_rows(path):
        rel = os.path.normpath(row["path"]).replace(os.sep, "/")
        full = Path(rel) if os.path.isabs(rel) else root / rel
        labels.add(row["label"])
        if rel in seen:
            d.skipped.append(
                Skipped(str(full), "duplicate", f"{path.name} lines {seen[rel]}, {line}")
            )
        elif not os.path.lexists(full):
            d.skipped.append(Skipped(str(full), "missing", f"{path.name} line {line}"))
        elif (reason := imaging.extension_reason(full.name)) is not None:
            d.skipped.append(Skipped(str(full), reason, f"extension {full.suffix or 'none'}"))
        else:
            d.cands.append(Candidate(full, rel, row["label"], row.get("split")))
        seen.setdefault(rel, line)
    d.classes = sorted(labels)
    return d


def _csv_rows(path: Path) -> Iterable[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if "path" not in header or "label" not in header:
            raise DataError(
                f"{path} needs a header row 'path,label' (optional 'split'); found {header}"
            )
        col = {name: header.index(name) for name in ("path", "label", "split") if name in header}
        for line, cells in enumerate(reader, 2):
            if not any(c.strip() for c in cells):
                continue
            row = {k: cells[i].strip() if i < len(cells) else "" for k, i in col.items()}
            if not row["path"] or not row["label"]:
                raise DataError(f"{path} line {line}: empty path or label; fix or delete the row")
            if "split" in row:
                if row["split"].lower() not in SPLIT_NAMES:
                    raise DataError(
                        f"{path} line {line}: split '{row['split']}' is not train, val or test"
                    )
                row["split"] = SPLIT_NAMES[row["split"].lower()]
            yield line, row


# ---- the split: pure functions -------------------------------------------------------------


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) image counts for one class of `n` images.

    A positive fraction gives at least one image once a class has two (so that every class can
    be measured), and training always keeps at least one.
    """

    def share(f: float) -> int:
        return 0 if f <= 0 or n < 2 else max(1, math.floor(f * n + 0.5))

    n_val, n_test = share(val_fraction), share(test_fraction)
    while n_val + n_test > n - 1 and n_val + n_test > 0:
        if n_test >= n_val:  # the test split gives way first: validation drives training
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def split_rank(seed: int, rel: str) -> int:
    """A file's stable position in the random order: depends on nothing but (seed, rel)."""
    digest = hashlib.blake2b(f"{seed}\0{rel}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign_splits(
    items: Sequence[tuple[str, str]], val_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """Split name for each (rel, label) item, stratified by label, in input order."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, (_, label) in enumerate(items):
        by_label[label].append(i)
    out = ["train"] * len(items)
    for idx in by_label.values():
        idx.sort(key=lambda i: (split_rank(seed, items[i][0]), items[i][0]))
        _, n_val, n_test = split_counts(len(idx), val_fraction, test_fraction)
        for i in idx[:n_val]:
            out[i] = "val"
        for i in idx[n_val : n_val + n_test]:
            out[i] = "test"
    return out


# ---- the manifest --------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRow:
    split: str
    path: str  # relative to the data root (absolute for CSV entries outside it)
    label: str
    size: int
    mtime_ns: int


def resolve(root: Path, rel: str) -> Path:
    return Path(rel) if os.path.isabs(rel) else root / rel


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    with fsio.atomic_open(path, "w") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(MANIFEST_FIELDS)
        w.writerows((r.split, r.path, r.label, r.size, r.mtime_ns) for r in rows)


def read_manifest(path: Path) -> list[ManifestRow]:
    """A run's split_manifest.csv. It belongs to the run folder, so a damaged one is a RunError
    (exit 5): restore it, or delete it, and the files are split again by the run's seed (the
    same split while the files have not changed)."""
    fix = "restore it, or delete it to split the files again by the run's seed"
    try:
        text = Path(path).read_text(encoding="utf-8")
        if text and not text.endswith("\n"):  # every row ends with one: the file was cut
            raise RunError(f"split manifest {path} is cut short (damaged); {fix}")
        with io.StringIO(text, newline="") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != MANIFEST_FIELDS:
                raise RunError(
                    f"{path} is not a split manifest (header {reader.fieldnames}); {fix}"
                )
            rows = [
                ManifestRow(r["split"], r["path"], r["label"], int(r["size"]), int(r["mtime_ns"]))
                for r in reader
            ]
    except OSError as e:
        raise RunError(f"cannot read split manifest {path}: {e.strerror or e}; {fix}") from e
    except (ValueError, TypeError, KeyError, csv.Error) as e:
        raise RunError(f"split manifest {path} is damaged ({e}); {fix}") from e
    bad = {r.split for r in rows} - set(SPLITS)
    if bad:
        raise RunError(f"split manifest {path} has unknown splits {sorted(bad)}; {fix}")
    _check_counts(rows, Path(path), fix)
    return rows


def _check_counts(rows: list[ManifestRow], path: Path, fix: str) -> None:
    """A manifest cut at a line boundary still parses: the class_counts.json written beside it
    at the same time says how many files each split had."""
    try:
        totals = fsio.read_json(path.parent / "class_counts.json")["totals"]
        expected = {str(s): int(n) for s, n in totals.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return  # nothing to compare with (an older run, or a damaged counts file)
    listed = Counter(r.split for r in rows)
    for split in sorted(set(expected) | set(listed)):
        if listed.get(split, 0) != expected.get(split, 0):
            raise RunError(
                f"split manifest {path} lists {listed.get(split, 0)} {split} files, "
                f"class_counts.json {expected.get(split, 0)}: it is damaged; {fix}"
            )


@dataclass
class ManifestDiff:
    missing: list[str] = field(default_factory=list)  # in the manifest, gone from disk
    modified: list[str] = field(default_factory=list)  # size or mtime changed
    added: list[str] = field(default_factory=list)  # on disk, not in the manifest

    def __bool__(self) -> bool:
        return bool(self.missing or self.modified or self.added)

    def lines(self) -> list[str]:
        out = []
        for what, rels, then in (
            ("missing", self.missing, "listed in the manifest, no longer on disk"),
            ("modified", self.modified, "changed since the manifest was written; re-checked"),
            ("added", self.added, "not in the manifest; ignored"),
        ):
            if rels:
                out.append(f"data changed: {len(rels)} {what} ({then}), e.g. {rels[0]}")
        return out


def diff_manifest(rows: Sequence[ManifestRow], root: Path, current: Iterable[str]) -> ManifestDiff:
    """Compare a manifest with the files on disk now (`current`: relpaths discovered today)."""
    diff = ManifestDiff()
    for r in rows:
        try:
            st = os.stat(resolve(root, r.path))
        except OSError:
            diff.missing.append(r.path)
            continue
        if (st.st_size, st.st_mtime_ns) != (r.size, r.mtime_ns):
            diff.modified.append(r.path)
    listed = {r.path for r in rows}
    diff.added = sorted(set(current) - listed)
    return diff


def from_manifest(
    disc: Discovery, manifest: Path, allow_changed: bool
) -> tuple[list[Candidate], list[Skipped], list[str], list[str]]:
    """Candidates exactly as an earlier run's manifest lists them, checked against the disk."""
    rows = read_manifest(manifest)
    diff = diff_manifest(rows, disc.root, [c.rel for c in disc.cands])
    gone = set(diff.missing)
    if gone and not allow_changed:
        raise DataChangedError(
            f"{len(gone)} files of the split manifest {manifest} are missing from {disc.root} "
            f"(e.g. {diff.missing[0]}); restore them, or continue with the "
            f"{len(rows) - len(gone)} that remain"
        )
    cands = [
        Candidate(resolve(disc.root, r.path), r.path, r.label, r.split)
        for r in rows
        if r.path not in gone
    ]
    missing = [Skipped(str(resolve(disc.root, p)), "missing", f"in {manifest}") for p in gone]
    classes = sorted({r.label for r in rows})  # the run's classes, even if one is gone now
    return cands, list(disc.skipped) + missing, classes, diff.lines()
