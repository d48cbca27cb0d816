"""Backbone features computed once per sample while the backbone is frozen.

With a frozen backbone (weights fixed, BatchNorm in eval mode) and no augmentation, a sample's
features never change, so every epoch after the first only trains the head on cached vectors:
the expensive backbone forward runs once per image for the whole run.

That one pass is pure inference, so it runs on an inference copy of the backbone when one is
given (`backbone=`): BatchNorm folded into the convolutions (models/fold.py), on a CPU each
convolution fused with its activation (models/fuse.py), parameters without gradients, under
`torch.inference_mode`, in the memory format asked for. The copy is made at the first lookup,
after a resumed run has restored its weights, checked against the backbone on that first
batch, and shared by the train and validation caches (SharedEncoder).

    cache = FeatureCache(len(train), backbone=model.backbone, channels_last=True)
    cache.fill(train, batch_size=64, transform=bundle.batch_transform)  # optional, up front
    features = cache.lookup(x, idx, compute)   # compute: the fallback without a backbone
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

Encoder = Callable[[torch.Tensor], torch.Tensor]


def inference_encoder(
    backbone: nn.Module, example: torch.Tensor, *, channels_last: bool
) -> Encoder:
    """The frozen backbone as a fast function of a batch: folded, eval, inference mode."""
    from cnnlab.models.fold import fast_eval_copy, memory_format

    fmt = memory_format(channels_last)
    fast = fast_eval_copy(backbone, example, memory_format=fmt)

    def encode(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fast(x.contiguous(memory_format=fmt))

    return encode


class SharedEncoder:
    """One backbone's inference copy, built at its first batch (after a resumed run has
    restored the weights) and shared by the caches of every split: copying, folding, fusing
    and checking it on one image costs 0.21-0.27 s for EfficientNet-Lite0 on 2 AMD EPYC vCPUs
    (a deepcopy of 0.07 s and three passes of the image), 4-5% of its frozen epoch on 398
    photos."""

    def __init__(self, backbone: nn.Module, *, channels_last: bool) -> None:
        self.backbone, self.channels_last = backbone, channels_last
        self._encode: Encoder | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._encode is None:
            # one sample checks the fold (and the fusion): three passes of it build the copy
            self._encode = inference_encoder(self.backbone, x[:1], channels_last=self.channels_last)
        return self._encode(x)


class FeatureCache:
    def __init__(
        self,
        n: int,
        *,
        backbone: nn.Module | None = None,
        channels_last: bool = False,
        encoder: SharedEncoder | None = None,
    ) -> None:
        """`backbone` (or an `encoder` shared with other caches) computes the features;
        without either, `lookup`'s `compute` does."""
        self.n = n
        self.features: torch.Tensor | None = None  # (n, F), on the model's device
        self.filled: torch.Tensor | None = None  # (n,) bool
        # (n,) int64 on the CPU, -1 until known: the label each item gave when its features
        # were computed, so a complete cache can stand in for the items (IndexedDataset)
        self.labels = torch.full((n,), -1, dtype=torch.int64)
        if encoder is None and backbone is not None:
            encoder = SharedEncoder(backbone, channels_last=channels_last)
        self._encoder = encoder
        self.computed = 0  # backbone passes so far: the cost the FLOP count charges

    def _encode(self, x: torch.Tensor, compute: Encoder) -> torch.Tensor:
        if self._encoder is None:
            with torch.no_grad():
                return compute(x)
        # an inference tensor cannot be saved for backward; the cache copies it anyway
        return self._encoder(x)

    @property
    def complete(self) -> bool:
        """Every sample's features are cached."""
        if self.n == 0:
            return True
        return self.filled is not None and bool(self.filled.all())

    def cached_labels(self) -> torch.Tensor | None:
        """Every item's label once every feature is cached and every lookup gave its labels;
        None before."""
        if not self.complete or bool((self.labels < 0).any()):
            return None
        return self.labels

    def lookup(
        self,
        x: torch.Tensor,
        idx: torch.Tensor,
        compute: Encoder,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Features for the batch; computes (and stores) only the ones not seen yet, and with
        `y` the labels of those."""
        if self.filled is None:
            self.filled = torch.zeros(self.n, dtype=torch.bool, device=idx.device)
        missing = ~self.filled[idx]
        if missing.any():
            # indexing copies the batch: only when part of it is cached already
            every = bool(missing.all())
            new_x, new_idx = (x, idx) if every else (x[missing], idx[missing])
            new_y = y if every or y is None else y[missing]
            self.store(new_idx, self._encode(new_x, compute), new_y)
        return self.features[idx]

    def store(self, idx: torch.Tensor, features: torch.Tensor, y: torch.Tensor | None) -> None:
        """Cache computed features (and the labels they came with) for the items `idx`."""
        self.computed += len(features)
        if self.features is None:
            self.features = torch.zeros(
                (self.n, features.shape[1]), dtype=features.dtype, device=features.device
            )
        if self.filled is None:
            self.filled = torch.zeros(self.n, dtype=torch.bool, device=idx.device)
        self.features[idx] = features
        self.filled[idx] = True
        if y is not None:
            self.labels[idx.cpu()] = y.to("cpu", torch.int64)

    def fill(
        self,
        dataset: Dataset,
        *,
        batch_size: int = 64,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: str | torch.device = "cpu",
        num_workers: int = 0,
    ) -> None:
        """Compute every sample's features up front, in inference batches of `batch_size`
        (larger than a training batch on a CPU, benchmarks/RESULTS.md), with the items'
        labels. Items are (x, y, ...); `transform` is the data's batch transform (uint8 ->
        normalised float), applied on `device`."""
        fill_caches(
            [(self, dataset)], batch_size=batch_size, transform=transform, device=device,
            num_workers=num_workers,
        )  # fmt: skip


def fill_caches(
    parts: list[tuple[FeatureCache, Dataset]],
    *,
    batch_size: int = 64,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> None:
    """Fill the caches of several splits (sharing one encoder) in one stream of equal batches:
    filled one after the other, each split's tail would be a batch of its own shape, and a CPU
    backend prepares its kernels per shape (the first Lite0 batch of 25 images took 46 ms more
    than the next one; benchmarks/RESULTS.md). Each split's items still load through its own
    DataLoader (a data set's batched `__getitems__` keeps working)."""
    encoders = {id(cache._encoder): cache._encoder for cache, _ in parts}
    if None in encoders.values():
        raise ValueError("FeatureCache.fill needs the backbone (FeatureCache(n, backbone=...))")
    if len(encoders) > 1:
        raise ValueError("fill_caches needs caches that share one encoder (SharedEncoder)")
    todo = [(cache, data) for cache, data in parts if not cache.complete and len(data)]
    if not todo:
        return
    encode = next(iter(encoders.values()))
    for x, y, pieces in _equal_batches(todo, batch_size, num_workers):
        x = x.to(device)
        features = encode(transform(x) if transform is not None else x)
        start = 0
        for cache, first, count in pieces:
            idx = torch.arange(first, first + count, device=device)
            cache.store(idx, features[start : start + count], y[start : start + count])
            start += count


def _equal_batches(parts: list[tuple[FeatureCache, Dataset]], size: int, num_workers: int):
    """(x, y, [(cache, first item, count), ...]) batches of `size` over the parts in order;
    only the last may be smaller."""
    chunks: list[tuple[FeatureCache, int, torch.Tensor, torch.Tensor]] = []
    held = 0
    for cache, data in parts:
        first = 0
        for x, y, *_ in DataLoader(data, batch_size=size, shuffle=False, num_workers=num_workers):
            chunks.append((cache, first, x, torch.as_tensor(y)))
            first += len(x)
            held += len(x)
            while held >= size:
                batch, chunks = _take(chunks, size)
                held -= size
                yield batch
    if held:
        yield _take(chunks, held)[0]


def _take(chunks: list, size: int) -> tuple[tuple, list]:
    """The first `size` items of the chunks as one batch, and the chunks left."""
    xs, ys, pieces, left = [], [], [], size
    while left:
        cache, first, x, y = chunks.pop(0)
        n = min(left, len(x))
        xs.append(x[:n])
        ys.append(y[:n])
        pieces.append((cache, first, n))
        if n < len(x):  # the rest of this chunk opens the next batch
            chunks.insert(0, (cache, first + n, x[n:], y[n:]))
        left -= n
    x = xs[0] if len(xs) == 1 else torch.cat(xs)
    y = ys[0] if len(ys) == 1 else torch.cat(ys)
    return (x, y, pieces), chunks
