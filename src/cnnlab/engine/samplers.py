"""Samplers whose order is a pure function of (seed, epoch), sharded across DDP ranks.

Training: one permutation per epoch; rank r takes every world-th index, so the union of the
ranks' k-th batches is exactly the k-th batch of a single process with the same global batch.
The permutation is padded by repeating its head to a multiple of world size (as
DistributedSampler does). Evaluation: rank r takes indices r, r+world, ... without padding, so
every sample is counted exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from cnnlab.data.bundle import set_epoch
from cnnlab.engine.seeding import derive_seed


class EpochSampler(Sampler[int]):
    def __init__(
        self,
        n: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world: int = 1,
        weights: np.ndarray | None = None,
        dataset: object | None = None,
    ) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world = n, seed, shuffle, rank, world
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.dataset = dataset  # told the epoch too, for per-epoch augmentation
        self.epoch = 0
        self.skip = 0  # samples of this rank to skip once (mid-epoch resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.dataset is not None:
            set_epoch(self.dataset, epoch)

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        rng = np.random.default_rng(derive_seed(self.seed, self.epoch, 0x5A3))
        if self.weights is not None:  # balanced sampling, with replacement
            p = self.weights / self.weights.sum()
            return rng.choice(self.n, size=self.n, replace=True, p=p)
        return rng.permutation(self.n)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        per_rank = -(-len(order) // self.world)  # ceil
        pad = per_rank * self.world - len(order)
        if pad:
            order = np.concatenate([order, order[:pad]])
        mine = order[self.rank :: self.world]
        skip, self.skip = self.skip, 0
        return iter(mine[skip:].tolist())

    def __len__(self) -> int:
        return -(-self.n // self.world)


class ShardSampler(Sampler[int]):
    """Evaluation: in order, each sample on exactly one rank, no padding."""

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))
