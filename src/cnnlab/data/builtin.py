"""Fashion-MNIST as a `DataBundle`: in-memory uint8 arrays, a stratified validation split carved
from train with the seed (the test split is never used for model selection), and cheap
augmentation on the arrays.

Augmentation for 28x28 images: "default" and "light" = horizontal flip, "strong" = flip + a
random shift of up to 2 px (zero padding + crop). Within the 5-minute CPU budget of the default
run, shifts cost more accuracy than they add (91.5% vs 92.5% test, benchmarks/RESULTS.md). Its randomness is drawn once per epoch from
(seed, epoch), indexed by sample, so results do not depend on worker count or on a resume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cnnlab.data.bundle import DataBundle, write_class_counts
from cnnlab.data.split import ManifestRow, read_manifest, split_counts, write_manifest
from cnnlab.data.transforms import measure_mean_std
from cnnlab.errors import DataError
from cnnlab.models.spec import PreprocessSpec

# pixels of random translation per preset: the border of Fashion-MNIST images is empty
# "default" for Fashion-MNIST is none: on a 2-4 epoch budget no flips did better than flips
# (benchmarks/RESULTS.md, "Fashion-MNIST on a FLOP budget")
SHIFTS = {"none": None, "light": 0, "default": None, "strong": 2}


class ArrayImageDataset(Dataset):
    """uint8 images (N, H, W) in memory -> normalised float tensors (C, S, S) for a model."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        spec: PreprocessSpec,
        *,
        shift: int | None = None,
        seed: int = 0,
    ) -> None:
        """`shift` None: no augmentation; 0: flips only; k: flips and shifts of up to k px."""
        # torch wants writable memory; the loader's cached arrays are read-only
        self.images = images if images.flags.writeable else images.copy()
        self.targets = labels.astype(np.int64)
        self.spec = spec
        self.augment = shift is not None
        self.shift = shift or 0
        self.seed = seed
        c = spec.input_size[0]
        self._mean = torch.tensor(spec.mean, dtype=torch.float32).view(c, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32).view(c, 1, 1)
        if self.augment:
            k = self.shift
            pad = ((0, 0), (k, k), (k, k))
            self._padded = np.pad(images, pad)  # (N, H+4, W+4), zero = background
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._drawn_for: int | None = None

    def set_epoch(self, epoch: int) -> None:
        # shared memory: persistent DataLoader workers see the new epoch too
        self._epoch.fill_(epoch)

    def _draws(self) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's shifts and flips for every sample, drawn once per epoch and process."""
        epoch = int(self._epoch)
        if self._drawn_for != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0x5EED])
            n = len(self.images)
            self._offsets = rng.integers(0, 2 * self.shift + 1, size=(n, 2))
            self._flips = rng.random(n) < 0.5
            self._drawn_for = epoch
        return self._offsets, self._flips

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.augment:
            offsets, flips = self._draws()
            dy, dx = offsets[i]
            h, w = self.images.shape[1:3]
            img = self._padded[i, dy : dy + h, dx : dx + w]
            if flips[i]:
                img = img[:, ::-1]
        else:
            img = self.images[i]
        return self.to_tensor(np.ascontiguousarray(img)), int(self.targets[i])

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        """A whole batch at once, the same tensors as `__getitem__` one by one.

        The DataLoader calls this instead of one `__getitem__` per image: for 28x28 images the
        per-item Python work (about 100 us) otherwise costs as much as a small CNN's step."""
        idx = np.asarray(indices, dtype=np.int64)
        h, w = self.images.shape[1:3]
        if self.augment:
            offsets, flips = self._draws()
            rows = offsets[idx, 0, None] + np.arange(h)  # (B, H) rows of the padded images
            cols = offsets[idx, 1, None] + np.arange(w)  # (B, W)
            cols = np.where(flips[idx, None], cols[:, ::-1], cols)  # a flip reads columns reversed
            imgs = self._padded[idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        else:
            imgs = self.images[idx]
        if (h, w) != tuple(self.spec.input_size[1:]):  # resizing: exactly as per item
            return [self[i] for i in indices]
        x = torch.from_numpy(imgs).unsqueeze(1).float().div_(255.0)  # (B, 1, H, W)
        c = self.spec.input_size[0]
        if c != 1:
            x = x.expand(-1, c, -1, -1)
        x = (x - self._mean) / self._std
        return list(zip(x.unbind(0), self.targets[idx].tolist(), strict=True))

    def to_tensor(self, img: np.ndarray) -> torch.Tensor:
        """(H, W) uint8 -> (C, S, S) float, resized and replicated as the spec asks."""
        x = torch.from_numpy(img).unsqueeze(0).float().div_(255.0)  # (1, H, W)
        c, s_h, s_w = self.spec.input_size
        if x.shape[1:] != (s_h, s_w):
            mode = "bicubic" if self.spec.interpolation == "bicubic" else "bilinear"
            x = F.interpolate(x[None], size=(s_h, s_w), mode=mode, align_corners=False)[0]
            x = x.clamp_(0.0, 1.0)
        if c != 1:
            x = x.expand(c, -1, -1)
        return (x - self._mean) / self._std


def build_fashion_mnist(
    *,
    data_dir: str | None,
    preprocess: PreprocessSpec | None,
    image_size: int,
    in_chans: int,
    augment: str,
    val_fraction: float,
    seed: int,
    subset: int | None = None,
    manifest: Path | None = None,
) -> DataBundle:
    """Fashion-MNIST, split stratified by `seed`. With `manifest` (a run's split_manifest.csv)
    the split is checked against the one the run was trained on."""
    from cnnlab.data.fashion_mnist import CLASSES, find_fashion_mnist, load_fashion_mnist

    folder = find_fashion_mnist(data_dir)
    images, labels = load_fashion_mnist("train", folder)
    test_images, test_labels = load_fashion_mnist("test", folder)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    test_idx = np.arange(len(test_labels))
    if subset is not None:
        train_idx = _take(train_idx, subset, seed)
        val_idx = _take(val_idx, subset, seed + 1)
        test_idx = _take(test_idx, subset, seed + 2)
    rows = _manifest_rows(train_idx, val_idx, labels, test_idx, test_labels)
    test_images, test_labels = test_images[test_idx], test_labels[test_idx]
    if manifest is not None:
        _check_manifest(rows, Path(manifest))
    if preprocess is None:  # from scratch: normalise with the training split's own statistics
        mean, std = measure_mean_std(images[train_idx][..., None])  # (N, H, W, 1)
        preprocess = PreprocessSpec(
            input_size=(in_chans, image_size, image_size), mean=mean * in_chans, std=std * in_chans
        )

    def split(x: np.ndarray, y: np.ndarray, shift: int | None) -> ArrayImageDataset:
        return ArrayImageDataset(x, y, preprocess, shift=shift, seed=seed)

    n = len(CLASSES)
    counts = {
        "train": np.bincount(labels[train_idx], minlength=n).tolist(),
        "val": np.bincount(labels[val_idx], minlength=n).tolist(),
        "test": np.bincount(test_labels, minlength=n).tolist(),
    }

    def write_artifacts(run_dir: Path) -> None:
        write_class_counts(run_dir, list(CLASSES), counts)
        # The split is a pure function of (labels, val_fraction, seed, subset); it is saved in
        # the same format as an image folder's, and resume/evaluate check it (_check_manifest).
        write_manifest(Path(run_dir) / "split_manifest.csv", rows)

    return DataBundle(
        classes=list(CLASSES),
        train=split(images[train_idx], labels[train_idx], SHIFTS[augment]),
        val=split(images[val_idx], labels[val_idx], None),
        test=split(test_images, test_labels, None),
        preprocess=preprocess,
        class_counts=counts,
        source={"dataset": "fashion-mnist", "path": str(folder), "layout": "idx"},
        summary=[
            f"data: Fashion-MNIST from {folder}: {len(train_idx):,} train / {len(val_idx):,} val "
            f"(stratified {val_fraction:.0%} of train, seed {seed}) / {len(test_labels):,} test"
        ],
        write_artifacts=write_artifacts,
    )


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): `fraction` of every class held out, rounded per class by the
    one rule image folders use too (`split.split_counts`).

    Each class is permuted with its own generator seeded by (seed, class), so adding a class
    does not reshuffle the others; both index arrays come back sorted.
    """
    labels = np.asarray(labels)
    keep, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        perm = np.random.default_rng([seed, int(c)]).permutation(idx)
        n_held = split_counts(len(idx), fraction, 0.0)[1]
        held.append(perm[:n_held])
        keep.append(perm[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def _manifest_rows(
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    labels: np.ndarray,
    test_idx: np.ndarray,
    test_labels: np.ndarray,
) -> list[ManifestRow]:
    """One row per image: `train-images#12345` names image 12345 of the IDX training file."""
    from cnnlab.data.fashion_mnist import CLASSES

    rows = [ManifestRow(split, f"train-images#{i}", CLASSES[labels[i]], 0, 0)
            for split, idx in (("train", train_idx), ("val", val_idx)) for i in idx]  # fmt: skip
    rows += [ManifestRow("test", f"t10k-images#{i}", CLASSES[test_labels[i]], 0, 0)
             for i in test_idx]  # fmt: skip
    return rows


def _check_manifest(rows: list[ManifestRow], manifest: Path) -> None:
    saved = read_manifest(manifest)
    if [(r.split, r.path) for r in saved] != [(r.split, r.path) for r in rows]:
        raise DataError(
            f"the Fashion-MNIST split differs from the run's {manifest} (other files, "
            f"val_fraction, seed or subset); use the run's own settings"
        )


def _take(idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    if n >= len(idx):
        return idx
    return np.sort(np.random.default_rng([seed, 0xC0FFEE]).choice(idx, size=n, replace=False))
