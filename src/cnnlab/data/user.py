"""A user's own datasets (or DataLoaders) as a `DataBundle`, for `cnnlab.fit`.

Items are (x, y): x a float tensor (C, H, W) already prepared the way the model wants it (the
engine does not normalise it again), y a class index. Without validation data, a stratified
`val_fraction` of the training data is held out by the same rule as everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, Subset

from cnnlab.config import Config
from cnnlab.data.bundle import DataBundle, inverse_frequency, write_class_counts
from cnnlab.errors import ConfigError, DataError
from cnnlab.models.spec import PreprocessSpec


def user_bundle(
    train: Any, val: Any, test: Any, *, classes: Sequence[str] | None, cfg: Config
) -> DataBundle:
    train, val, test = (_dataset(d, cfg, name) for d, name in
                        ((train, "train_data"), (val, "val_data"), (test, "test_data")))  # fmt: skip
    y_train = targets(train)
    others = [int(targets(d).max()) for d in (val, test) if d is not None]
    num_classes = max([int(y_train.max()), *others]) + 1
    names = list(classes) if classes is not None else _names(train, num_classes)
    if len(names) < num_classes:
        raise ConfigError(
            f"classes lists {len(names)} names, but labels go up to {num_classes - 1}"
        )
    how = "given"
    if val is None:
        from cnnlab.data.builtin import stratified_split

        keep, held = stratified_split(y_train, cfg.data.val_fraction, cfg.train.seed)
        if len(held) == 0:
            raise ConfigError("no validation data: pass val_data or set val_fraction above 0")
        train, val = Subset(train, keep.tolist()), Subset(train, held.tolist())
        how = f"{cfg.data.val_fraction:.0%} of train_data, stratified, seed {cfg.train.seed}"
        y_train = y_train[keep]
    x0 = train[0][0]
    if getattr(x0, "ndim", 0) != 3:
        raise DataError(
            f"train_data items must be (x, y) with x a (C, H, W) tensor; got x of shape "
            f"{tuple(getattr(x0, 'shape', ()))}"
        )
    c, h, w = (int(v) for v in x0.shape)
    counts = {s: np.bincount(targets(d), minlength=len(names)).tolist()
              for s, d in (("train", train), ("val", val), ("test", test))
              if d is not None}  # fmt: skip
    return DataBundle(
        classes=names,
        train=train,
        val=val,
        test=test,
        # the user's data arrives prepared: the recorded preprocessing is the identity
        preprocess=PreprocessSpec(input_size=(c, h, w), mean=(0.0,) * c, std=(1.0,) * c),
        class_counts=counts,
        source={"dataset": "user", "path": None, "layout": "datasets"},
        summary=[
            f"data: your datasets: {len(train):,} train / {len(val):,} val ({how})"
            + (f" / {len(test):,} test" if test is not None else "")
            + f"; {len(names)} classes; items {c}x{h}x{w}"
        ],
        class_weights=inverse_frequency(counts["train"]),
        write_artifacts=lambda run_dir: write_class_counts(run_dir, names, counts),
    )


def _dataset(data: Any, cfg: Config, name: str) -> Dataset | None:
    if data is None:
        return None
    if isinstance(data, DataLoader):  # the engine makes its own loaders (deterministic order)
        if data.batch_size is not None and cfg.data.batch_size == Config().data.batch_size:
            cfg.data.batch_size = data.batch_size
        return data.dataset
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise ConfigError(f"{name} must be a map-style Dataset or a DataLoader over one")
    if len(data) == 0:
        raise DataError(f"{name} is empty")
    return data


def targets(dataset: Dataset) -> np.ndarray:
    """Labels of every item: the dataset's `targets` when it has them, else read item by item."""
    if isinstance(dataset, Subset):
        return targets(dataset.dataset)[np.asarray(dataset.indices)]
    known = getattr(dataset, "targets", None)
    if known is not None:
        return np.asarray(known, dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def _names(dataset: Dataset, n: int) -> list[str]:
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    named = getattr(base, "classes", None)
    return [str(c) for c in named] if named is not None else [str(i) for i in range(n)]
