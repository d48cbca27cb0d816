"""The images an audit looks at, each with the split and label a training run would give it.

Three ways in, all through the data code `cnnlab train` itself uses, so that the splits audited
are the run's splits:

  folder_source(path, ...)     an image folder (any layout) or a CSV manifest, via
                               data.folder.build_folder_data: the same scan (every file decoded
                               once, bad files skipped and listed), the same split rule
                               (val/test fractions, seed, or an earlier run's manifest), and the
                               same uint8 pixel cache, so nothing is decoded a second time
  from_folder_data(data)       a FolderData a run has already built: its pixel store is reused
  fashion_mnist_source(...)    the built-in Fashion-MNIST: IDX arrays, val carved from train by
                               data.builtin.stratified_split; images are named as in a run's
                               split_manifest.csv: `train-images#601`, `t10k-images#7243`
                               (index in the official file)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cnnlab.data.scan import Skipped
from cnnlab.data.split import resolve
from cnnlab.models.spec import PreprocessSpec

BUILTIN_NAMES = ("fashion-mnist", "fashion_mnist", "fmnist")


class PixelSource(Protocol):
    def __len__(self) -> int: ...

    def get(self, i: int) -> np.ndarray: ...  # (H, W, C) uint8, C = 1 or 3


@dataclass
class AuditData:
    root: str  # what `rels` are relative to
    layout: str  # split_dirs, class_folders, csv, idx
    classes: list[str]
    rels: list[str]  # per image
    splits: list[str]  # per image: train, val or test
    labels: np.ndarray  # (N,) int64 index into `classes`
    pixels: PixelSource  # image i as uint8 (H, W, C): the cached (resized) pixels
    paths: list[Path] | None = None  # absolute files; None for in-memory arrays
    skipped: list[Skipped] = field(default_factory=list)
    # True when `pixels` are the decoded images themselves (no resize in between)
    native: bool = False
    describe: dict[str, Any] = field(default_factory=dict)  # split rule, seed, fractions

    def __len__(self) -> int:
        return len(self.rels)

    def rel(self, path: str | os.PathLike) -> str:
        """A path relative to the data root when it lies inside it, else as given."""
        try:
            return Path(path).absolute().relative_to(Path(self.root)).as_posix()
        except ValueError:
            return str(path)

    def summary(self) -> dict[str, Any]:
        images = {s: self.splits.count(s) for s in ("train", "val", "test") if s in self.splits}
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": list(self.classes),
            "images": images,
            "skipped": len(self.skipped),
            **self.describe,
        }


class _DatasetPixels:
    """Items of several ImageDatasets (one per split) as one PixelSource, in split order."""

    def __init__(self, refs: list[tuple[Any, int]]) -> None:
        self.refs = refs  # (dataset, index in it)

    def __len__(self) -> int:
        return len(self.refs)

    def get(self, i: int) -> np.ndarray:
        ds, j = self.refs[i]
        return ds.raw(j)


class ArrayPixels:
    """(N, H, W) or (N, H, W, C) uint8 images in memory as a PixelSource."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def get(self, i: int) -> np.ndarray:
        a = self.images[i]
        return a[:, :, None] if a.ndim == 2 else a


def from_folder_data(data: Any) -> AuditData:
    """AuditData over a data.folder.FolderData: its files, splits, labels and pixel store."""
    refs: list[tuple[Any, int]] = []
    paths: list[Path] = []
    for ds in (data.train, data.val, data.test):
        if ds is not None:
            refs += [(ds, j) for j in range(len(ds))]
            paths += list(ds.paths)
    rows = data.manifest_rows
    # The manifest rows and the datasets are built from one list in one order (folder._assemble);
    # check it anyway, since a mismatch would attach findings to the wrong files.
    if len(rows) != len(refs) or any(
        resolve(data.root, r.path) != p for r, p in zip(rows, paths, strict=True)
    ):
        raise RuntimeError("FolderData manifest rows and datasets disagree")
    idx = {c: k for k, c in enumerate(data.classes)}
    split_note = data.notes[0] if data.notes else ""
    return AuditData(
        root=str(data.root),
        layout=data.layout,
        classes=list(data.classes),
        rels=[r.path for r in rows],
        splits=[r.split for r in rows],
        labels=np.array([idx[r.label] for r in rows], dtype=np.int64),
        pixels=_DatasetPixels(refs),
        paths=paths,
        skipped=list(data.skipped),
        describe={"split_rule": split_note},
    )


def folder_source(
    path: str | os.PathLike,
    *,
    spec: PreprocessSpec,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    manifest: str | os.PathLike | None = None,
    cache: str = "disk",
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> AuditData:
    """Scan, split and cache an image folder or CSV exactly as `cnnlab train --data` does.

    `spec` decides the cached size: the embedding model's preprocessing, so that a later audit
    or a training run of that model at that size reads the same pixel pack.
    """
    from cnnlab.data.folder import build_folder_data

    data = build_folder_data(
        path,
        image_size=spec.input_size[1],
        in_chans=3,
        preprocess=spec,
        augment="none",
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        cache=cache,
        cache_dir=cache_dir,
        manifest=Path(manifest) if manifest is not None else None,
        log=log,
        output="uint8",
    )
    out = from_folder_data(data)
    out.describe.update(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    return out


def fashion_mnist_source(
    data_dir: str | os.PathLike | None = None, *, val_fraction: float = 0.1, seed: int = 0
) -> AuditData:
    """Fashion-MNIST train (split into train/val as `cnnlab train` splits it) and test."""
    from cnnlab.data.builtin import stratified_split
    from cnnlab.data.fashion_mnist import CLASSES, find_fashion_mnist, load_fashion_mnist

    folder = find_fashion_mnist(data_dir)
    images, labels = load_fashion_mnist("train", folder)
    test_images, test_labels = load_fashion_mnist("test", folder)
    _, val_idx = stratified_split(labels, val_fraction, seed)
    splits = np.full(len(labels), "train", dtype=object)
    splits[val_idx] = "val"
    return AuditData(
        root=str(folder),
        layout="idx",
        classes=list(CLASSES),
        rels=[f"train-images#{i}" for i in range(len(labels))]
        + [f"t10k-images#{i}" for i in range(len(test_labels))],
        splits=list(splits) + ["test"] * len(test_labels),
        labels=np.concatenate([labels, test_labels]).astype(np.int64),
        pixels=ArrayPixels(np.concatenate([images, test_images])),
        native=True,
        describe={
            "split_rule": f"val carved from train: {val_fraction:.0%} of each class, seed {seed}",
            "val_fraction": val_fraction,
            "seed": seed,
        },
    )
