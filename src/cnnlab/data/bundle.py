"""What every data source hands to the engine: datasets, classes and the preprocessing used.

Data sources (the built-in Fashion-MNIST, image folders, CSV manifests) differ in how they find
and decode images; past this point the engine sees only a `DataBundle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from cnnlab.models.spec import PreprocessSpec


@dataclass
class DataBundle:
    classes: list[str]
    # items: (x (C,H,W), y int); x is uint8 for image folders (normalised on the device by
    # batch_transform) and float32 normalised for Fashion-MNIST; may have set_epoch(epoch)
    train: Dataset
    val: Dataset
    test: Dataset | None
    preprocess: PreprocessSpec  # the evaluation preprocessing, saved with the weights
    class_counts: dict[str, list[int]]  # split -> images per class
    source: dict[str, Any]  # what was loaded, for the report (name, path, layout)
    summary: list[str] = field(default_factory=list)  # lines for the console
    class_weights: list[float] | None = None  # inverse-frequency, for a weighted loss
    write_artifacts: Callable[[Path], None] = lambda run_dir: None
    # Applied to each batch after it reaches the device (uint8 -> normalised float): workers
    # then pass 4x smaller uint8 tensors and normalisation runs once per batch, not per image.
    batch_transform: Callable[[Any], Any] | None = None
    # image folders and CSVs: their data.folder.FolderData (scan, split, pixel store), which
    # the dataset audit reads so that it checks exactly the run's files and splits
    folder: Any = None


def write_class_counts(run_dir: Path, classes: list[str], counts: dict[str, list[int]]) -> None:
    """class_counts.json, the same for every data source: images per class and split."""
    from cnnlab.fsio import write_json

    totals = {s: sum(c) for s, c in counts.items()}
    write_json(Path(run_dir) / "class_counts.json",
               {"classes": list(classes), "counts": counts, "totals": totals})  # fmt: skip


def inverse_frequency(counts: list[int]) -> list[float]:
    """Class weights for a weighted loss: total / (classes x count), so the average sample
    weight is 1; a class without images gets 0."""
    total, k = sum(counts), len(counts)
    return [total / (k * n) if n else 0.0 for n in counts]


def set_epoch(dataset: Any, epoch: int) -> None:
    """Tell a dataset (or a Subset of one) which epoch it serves, for per-epoch augmentation."""
    target = getattr(dataset, "dataset", dataset)
    if hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


# the image of an item whose backbone features are cached: nothing to decode (batches of it
# are (B, 0) tensors)
NO_IMAGE = torch.zeros(0)


class IndexedDataset(Dataset):
    """Items as (x, y, index): lets the engine cache per-sample backbone features. Once every
    sample's features are cached (`features_cached(labels)`, with the labels the items gave
    while the features were computed), items carry NO_IMAGE instead of a decoded image, so
    later epochs decode nothing; flag and labels live in shared memory, so DataLoader workers
    started earlier see them too."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.targets = getattr(dataset, "targets", None)
        self._cached = torch.zeros((), dtype=torch.bool).share_memory_()
        self._labels = torch.zeros(len(dataset), dtype=torch.int64).share_memory_()

    def features_cached(self, labels: torch.Tensor) -> None:
        if labels.shape != self._labels.shape:
            raise ValueError(f"{len(labels)} labels for {len(self._labels)} items")
        self._labels.copy_(labels)
        self._cached.fill_(True)

    def decode_images(self) -> None:
        """Back to decoded images (the backbone trains again: its features change)."""
        self._cached.fill_(False)

    def set_epoch(self, epoch: int) -> None:
        set_epoch(self.dataset, epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, Any, int]:
        return self._item(i, bool(self._cached))

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, Any, int]]:
        # the DataLoader's batched fetch: the flag is read once, so a batch is never half
        # images and half NO_IMAGE when it changes while a worker is fetching
        cached = bool(self._cached)
        fetch = getattr(self.dataset, "__getitems__", None)
        if cached or fetch is None:
            return [self._item(i, cached) for i in indices]
        # the wrapped data set's own batched fetch (Fashion-MNIST's: ~100 us per item less)
        return [(x, y, i) for (x, y), i in zip(fetch(indices), indices, strict=True)]

    def _item(self, i: int, cached: bool) -> tuple[Any, Any, int]:
        if cached:
            return NO_IMAGE, int(self._labels[i]), i
        x, y = self.dataset[i]
        return x, y, i
