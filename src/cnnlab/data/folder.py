"""A user's image folder (or CSV) as train/val/test datasets: scan once, then train from a manifest.

    data = build_folder_data("photos/", image_size=224, in_chans=3, preprocess=weights.preprocess)
    for line in data.summary_lines():
        print(line)
    data.write_artifacts(run_dir)  # skipped.csv, split_manifest.csv, class_counts.json
    loader = DataLoader(data.train, batch_size=32, sampler=data.balanced_sampler(seed=0))

Steps: list files and classes (split.py); check each with a full decode, in parallel, filling
the pixel cache from the same decode (scan.py, cache.py); split; datasets read only what the split
lists. Bad files are skipped and listed, never fatal mid-epoch; an empty class or split is an
error that names it. With `manifest` (an earlier run's split_manifest.csv) files and splits are
the manifest's: changed files are re-checked and used if still good, new files are ignored (both
noted); missing files are an error, as the run would not be comparable, unless
`allow_changed=True`, which skips them as `missing`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab import fsio
from cnnlab.data import imaging
from cnnlab.data.bundle import inverse_frequency, write_class_counts
from cnnlab.data.cache import (
    DEFAULT_BUDGET,
    MODES,
    BalancedSampler,
    ImageDataset,
    PixelCacheBuilder,
    PixelStore,
    default_cache_dir,
    pack_dir,
)
from cnnlab.data.scan import Candidate, Record, Skipped, scan
from cnnlab.data.split import (
    SPLITS,
    Discovery,
    ManifestRow,
    assign_splits,
    discover,
    from_manifest,
    write_manifest,
)
from cnnlab.data.transforms import (
    PRESETS,
    ToFloatNormalize,
    build_transform,
    eval_transform,
    load_for_predict,
    measure_mean_std,
    resize_size,
)
from cnnlab.errors import ConfigError, DataError, unknown
from cnnlab.models.spec import PreprocessSpec

# eval_transform, load_for_predict: from transforms.py, re-exported for predict.
__all__ = ["FolderData", "build_folder_data", "eval_transform", "load_for_predict"]

BAD_IMAGE_POLICIES = ("skip", "fail")


@dataclass
class FolderData:
    """What build_folder_data found: datasets per split, classes, counts, skips, provenance."""

    classes: list[str]
    train: ImageDataset
    val: ImageDataset | None  # None only with val_fraction=0 and no val folder
    test: ImageDataset | None
    preprocess: PreprocessSpec
    class_counts: dict[str, list[int]]  # split -> images per class, in `classes` order
    skipped: list[Skipped]  # (path, reason, detail)
    layout: str
    root: Path = Path(".")
    manifest_rows: list[ManifestRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how it was split, warnings, cache
    output: str = "float"  # "uint8": items stay uint8; apply batch_transform() on the device

    def summary_lines(self) -> list[str]:
        """What was found, split and skipped: for the console, one fact per line."""
        lines = [f"data: {self.root} (layout {self.layout}); {self.notes[0]}"]
        shown = ", ".join(self.classes[:10]) + (", ..." if len(self.classes) > 10 else "")
        lines.append(f"classes: {len(self.classes)} ({shown})")
        lines += _count_lines(self.classes, self.class_counts)
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} files (all listed in skipped.csv):")
            by_reason = Counter(s.reason for s in self.skipped)
            for reason, n in by_reason.most_common():
                first = next(s for s in self.skipped if s.reason == reason)
                desc = imaging.REASONS.get(reason, reason)
                lines.append(f"  {reason:<18} {n:>6}  {desc}, e.g. {first.path}")
        return lines + self.notes[1:]

    def class_weights(self) -> list[float]:
        """Inverse class frequency on train, normalised so the average sample weight is 1."""
        return inverse_frequency(self.class_counts["train"])

    def balanced_sampler(self, seed: int = 0) -> BalancedSampler:
        return BalancedSampler(self.train.targets, seed)

    def batch_transform(self) -> torch.nn.Module:
        """What turns a batch of items into model input: identity for output="float",
        ToFloatNormalize(preprocess) for output="uint8" (apply after moving it to the device)."""
        return ToFloatNormalize(self.preprocess) if self.output == "uint8" else torch.nn.Identity()

    def write_artifacts(self, run_dir: Path) -> None:
        """skipped.csv, split_manifest.csv and class_counts.json, each written atomically."""
        run_dir = Path(run_dir)
        with fsio.atomic_open(run_dir / "skipped.csv", "w") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(("path", "reason", "detail"))
            w.writerows(sorted(self.skipped))
        write_manifest(run_dir / "split_manifest.csv", self.manifest_rows)
        write_class_counts(run_dir, self.classes, self.class_counts)


def _count_lines(classes: list[str], counts: dict[str, list[int]]) -> list[str]:
    splits = list(counts)
    lines = ["images: " + ", ".join(f"{s} {sum(counts[s])}" for s in splits)]
    if len(classes) <= 20:
        width = max(len(c) for c in classes) + 2
        lines.append("  " + "class".ljust(width) + "".join(f"{s:>8}" for s in splits))
        for k, name in enumerate(classes):
            lines.append("  " + name.ljust(width) + "".join(f"{counts[s][k]:>8}" for s in splits))
        return lines
    train = counts["train"]
    lo, hi = train.index(min(train)), train.index(max(train))
    lines.append(
        f"  train per class: min {train[lo]} ({classes[lo]}), max {train[hi]} ({classes[hi]}), "
        f"imbalance {train[hi] / train[lo]:.1f}x"
    )
    return lines


def build_folder_data(
    path: str | os.PathLike,
    *,
    image_size: int,
    in_chans: int,
    preprocess: PreprocessSpec | None,
    augment: str = "light",
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    cache: str = "auto",
    cache_dir: Path | None = None,
    workers: int = 0,
    on_bad_image: str = "skip",
    manifest: Path | None = None,
    log: Callable[[str], None] = print,
    allow_changed: bool = False,
    cache_budget: int = DEFAULT_BUDGET,
    output: str = "float",
) -> FolderData:
    """Find, check, split and cache an image folder or CSV; see the module docstring.

    `preprocess` None means a model from scratch: mean/std are measured on the training split
    and the result's `preprocess` holds them. `workers` is the DataLoader worker count the caller
    will use (it decides where the pixel cache lives). `output="uint8"` keeps items uint8 for
    `batch_transform()` on the device (fast with workers). Logs progress only; print
    `summary_lines()` for the report.
    """
    _check_options(augment, cache, on_bad_image, val_fraction, test_fraction, in_chans, output)
    spec = _target_spec(preprocess, image_size, in_chans)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    disc = discover(path)
    root, notes = disc.root, []
    cands, skipped, classes = disc.cands, list(disc.skipped), disc.classes
    if manifest is not None:
        cands, skipped, classes, notes = from_manifest(disc, Path(manifest), allow_changed)
    short = resize_size(spec)
    builder = None
    if cache != "off":
        folder = pack_dir(cache_dir, root, short, in_chans, spec.interpolation)
        builder = PixelCacheBuilder(
            mode=cache, folder=folder, short=short, in_chans=in_chans,
            interpolation=spec.interpolation, workers=workers, budget=cache_budget, log=log,
        )  # fmt: skip
    log(f"checking {len(cands)} image files in {root} ...")
    scan_file = cache_dir / "scan" / f"{hashlib.sha1(str(root).encode()).hexdigest()[:16]}.json"
    records, bad = scan(cands, in_chans=in_chans, cache_file=scan_file, pixels=builder, log=log)
    skipped = sorted(skipped + bad)
    if on_bad_image == "fail":
        _fail_on_bad(skipped, root)
    by_split, expected, how = _split(
        records, cands, disc, manifest, val_fraction, test_fraction, seed
    )
    counts = _check_splits(by_split, expected, classes, disc, skipped)
    measure = preprocess is None
    data = _assemble(by_split, classes, counts, skipped, builder, spec, measure, seed, disc)
    data.notes = [
        how,
        *notes,
        *_missing_class_notes(classes, counts),
        *_case_notes(classes),
        *data.notes,
    ]
    data.output = output
    for split, ds in (("train", data.train), ("val", data.val), ("test", data.test)):
        if ds is not None:
            norm = output == "float"
            ds.transform = build_transform(data.preprocess, augment, split == "train", norm)
    return data


def _check_options(
    augment: str, cache: str, on_bad: str, val: float, test: float, in_chans: int, output: str
) -> None:
    if output not in ("float", "uint8"):
        raise unknown("output", output, ("float", "uint8"))
    if augment not in PRESETS:
        raise unknown("augmentation preset", augment, PRESETS)
    if cache not in MODES:
        raise unknown("cache mode", cache, MODES)
    if on_bad not in BAD_IMAGE_POLICIES:
        raise unknown("on_bad_image policy", on_bad, BAD_IMAGE_POLICIES)
    if in_chans not in (1, 3):
        raise ConfigError(f"in_chans must be 1 or 3 for image files, got {in_chans}")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError(
            f"val_fraction {val} + test_fraction {test} must each be in [0, 1) and sum below 1"
        )


def _target_spec(preprocess: PreprocessSpec | None, image_size: int, c: int) -> PreprocessSpec:
    """The model's preprocessing at `image_size` and `c` channels (mean/std 0.5: placeholders)."""
    size = (c, image_size, image_size)
    if preprocess is None:
        return PreprocessSpec(input_size=size, mean=(0.5,) * c, std=(0.5,) * c)
    mean, std = preprocess.mean, preprocess.std
    if len(mean) != c:  # e.g. grayscale photos into weights with RGB statistics
        mean, std = (sum(mean) / len(mean),) * c, (sum(std) / len(std),) * c
    return dataclasses.replace(preprocess, input_size=size, mean=mean, std=std)


def _split(
    records: list[Record],
    cands: list[Candidate],
    disc: Discovery,
    manifest: Path | None,
    val: float,
    test: float,
    seed: int,
) -> tuple[dict[str, list[Record]], set[str], str]:
    """Records per split, the splits that must not be empty, and how the split was made."""
    # Splits the layout (or manifest) names must not come out empty, even if every file in
    # them was skipped.
    fixed = {c.split for c in cands if c.split} | (set(disc.split_dirs) if not manifest else set())
    if manifest is not None:
        how = f"files and splits from {manifest}"
        val = test = 0.0
    elif disc.split_dirs:
        how = "splits from folders " + ", ".join(
            f"{disc.split_dirs[s].name}/" for s in SPLITS if s in disc.split_dirs
        )
    elif fixed:
        how = "splits from the CSV's split column"
    else:
        how = f"split by seed {seed}: val {val:.0%}, test {test:.0%} of each class"
    val, test = (0.0 if "val" in fixed else val), (0.0 if "test" in fixed else test)
    if fixed and manifest is None and (val or test):
        how += f"; carved from train by seed {seed}: val {val:.0%}, test {test:.0%}"
    pool = [r for r in records if r.cand.split in (None, "train")]
    assigned = assign_splits([(r.cand.rel, r.cand.label) for r in pool], val, test, seed)
    where = dict(zip((id(r) for r in pool), assigned, strict=True))
    by_split: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for r in records:
        by_split[where.get(id(r), r.cand.split)].append(r)
    expected = {"train"} | fixed | {s for s, f in (("val", val), ("test", test)) if f > 0}
    return {s: rs for s, rs in by_split.items() if rs or s in expected}, expected, how


def _skip_summary(skipped: list[Skipped], under: str) -> str:
    reasons = Counter(s.reason for s in skipped if s.path.startswith(under))
    if not reasons:
        return "no image files"
    parts = ", ".join(f"{r} {n}" for r, n in reasons.most_common())
    return f"{sum(reasons.values())} skipped: {parts}"


def _check_splits(
    by_split: dict[str, list[Record]],
    expected: set[str],
    classes: list[str],
    disc: Discovery,
    skipped: list[Skipped],
) -> dict[str, list[int]]:
    """Images per class and split; errors for an empty split or a class without training data."""
    for s in SPLITS:
        if s in expected and not by_split.get(s):
            folder = disc.split_dirs.get(s)
            where = f"{folder} has no usable images" if folder else f"no usable {s} images"
            fix = "add images" + (" or remove the folder" if folder else f" or set {s}_fraction 0")
            summary = _skip_summary(skipped, str(folder or disc.root))
            raise DataError(f"the {s} split is empty: {where} ({summary}); {fix}")
    idx = {c: k for k, c in enumerate(classes)}
    counts = {s: [0] * len(classes) for s in by_split}
    for s, records in by_split.items():
        for r in records:
            counts[s][idx[r.cand.label]] += 1
    empty = [c for c, n in zip(classes, counts["train"], strict=True) if n == 0]
    if empty:
        raise DataError(_no_training_images(empty, disc, skipped))
    if len(classes) < 2:
        where = "labels in the CSV" if disc.layout == "csv" else f"class folders in {disc.root}"
        raise DataError(
            f"only one class ({classes[0]!r}) among the {where}: a classifier needs at least two "
            f"(it would reach accuracy 1.0 by always answering {classes[0]!r}); add the others"
        )
    return counts


def _case_notes(classes: list[str]) -> list[str]:
    """Labels that differ only in case are different classes, which is rarely meant."""
    by_folded: dict[str, list[str]] = {}
    for c in classes:
        by_folded.setdefault(c.casefold(), []).append(c)
    return [
        f"warning: classes {' and '.join(repr(n) for n in names)} differ only in case and are "
        f"trained as {len(names)} classes; rename the folders (or labels) alike to merge them"
        for names in by_folded.values()
        if len(names) > 1
    ]


def _no_training_images(empty: list[str], disc: Discovery, skipped: list[Skipped]) -> str:
    c = empty[0]
    dirs = disc.class_dirs.get("train", disc.class_dirs.get("", {}))
    also = f" (also: {', '.join(repr(e) for e in empty[1:])})" if empty[1:] else ""
    if c in dirs:
        where, fix = f"{dirs[c]} ({_skip_summary(skipped, str(dirs[c]) + os.sep)})", "the folder"
    elif disc.layout == "csv":
        where, fix = f"{disc.root} (no usable row with that label)", "the label"
    else:
        where, fix = f"{disc.split_dirs.get('train', disc.root)} (no folder {c}/)", "the class"
    return f"no training images for class '{c}' in {where}{also}; add images or remove {fix}"


def _fail_on_bad(skipped: list[Skipped], root: Path) -> None:
    bad = [s for s in skipped if s.reason in imaging.BAD_IMAGE_REASONS]
    if bad:
        reasons = ", ".join(f"{r} {n}" for r, n in Counter(s.reason for s in bad).most_common())
        first = "; ".join(f"{s.path} ({s.reason})" for s in bad[:3])
        raise DataError(
            f"{len(bad)} unusable image files in {root} ({reasons}): {first}; "
            "fix or delete them, or skip them with on_bad_image=skip"
        )


def _missing_class_notes(classes: list[str], counts: dict[str, list[int]]) -> list[str]:
    notes = []
    for s in ("val", "test"):
        gone = [c for c, n in zip(classes, counts.get(s, []), strict=False) if n == 0]
        if s in counts and gone:
            shown = ", ".join(repr(c) for c in gone[:10]) + (", ..." if len(gone) > 10 else "")
            notes.append(f"warning: {len(gone)} classes have no {s} images: {shown}")
    return notes


def _assemble(
    by_split: dict[str, list[Record]],
    classes: list[str],
    counts: dict[str, list[int]],
    skipped: list[Skipped],
    builder: PixelCacheBuilder | None,
    spec: PreprocessSpec,
    measure: bool,
    seed: int,
    disc: Discovery,
) -> FolderData:
    """Datasets over the pixel store, in split order; transforms are set by the caller."""
    order = [(s, r) for s in SPLITS for r in by_split.get(s, [])]
    store = (
        builder.finish([(r.cand.path, r.size, r.mtime_ns) for _, r in order]) if builder else None
    )
    idx = {c: k for k, c in enumerate(classes)}
    decode = (spec.input_size[0], resize_size(spec), spec.interpolation)
    sets: dict[str, ImageDataset] = {}
    start = 0
    for s, records in by_split.items():
        sets[s] = ImageDataset(
            [r.cand.path for r in records], [idx[r.cand.label] for r in records], None,
            store=store, items=list(range(start, start + len(records))), random=s == "train",
            seed=seed, decode=decode,
        )  # fmt: skip
        start += len(records)
    if measure:
        mean, std = measure_mean_std(sets["train"])
        spec = dataclasses.replace(spec, mean=mean, std=std)
    rows = [ManifestRow(s, r.cand.rel, r.cand.label, r.size, r.mtime_ns) for s, r in order]
    return FolderData(
        classes=classes, train=sets["train"], val=sets.get("val"), test=sets.get("test"),
        preprocess=spec, class_counts=counts, skipped=skipped, layout=disc.layout,
        root=disc.root, manifest_rows=rows,
        notes=[_cache_note(store, decode[1]), _stats_note(spec, measure)],
    )  # fmt: skip


def _cache_note(store: PixelStore | None, short: int) -> str:
    if store is None:
        return "pixel cache: off (every image is decoded at every access)"
    where = f" in {os.path.dirname(store.files[0])}" if store.files else ""
    mib = store.nbytes / 2**20
    return f"pixel cache: {store.mode}{where}, {mib:.0f} MiB, shorter side {short} px"


def _stats_note(spec: PreprocessSpec, measured: bool) -> str:
    src = "measured on the training split" if measured else "from the model's weights"
    return f"normalisation {src}: mean {spec.mean}, std {spec.std}"
