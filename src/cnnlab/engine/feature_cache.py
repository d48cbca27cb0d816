"""Backbone features computed once per sample while the backbone is frozen.

With a frozen backbone (weights fixed, BatchNorm in eval mode) and no augmentation, a sample's
features never change, so every epoch after the first only trains the head on cached vectors:
the expensive backbone forward runs once per image for the whole run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class FeatureCache:
    def __init__(self, n: int) -> None:
        self.n = n
        self.features: torch.Tensor | None = None  # (n, F), on the model's device
        self.filled: torch.Tensor | None = None  # (n,) bool

    def lookup(
        self, x: torch.Tensor, idx: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Features for the batch; computes (and stores) only the ones not seen yet."""
        if self.filled is None:
            self.filled = torch.zeros(self.n, dtype=torch.bool, device=idx.device)
        missing = ~self.filled[idx]
        if missing.any():
            with torch.no_grad():
                fresh = compute(x[missing])
            if self.features is None:
                self.features = fresh.new_zeros((self.n, fresh.shape[1]))
            self.features[idx[missing]] = fresh
            self.filled[idx[missing]] = True
        return self.features[idx]

    @property
    def complete(self) -> bool:
        return self.filled is not None and bool(self.filled.all())
