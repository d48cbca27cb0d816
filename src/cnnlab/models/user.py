"""A user's own `nn.Module` in the shape the engine trains (`cnnlab.fit`)."""

from __future__ import annotations

import torch
from torch import nn


class UserClassifier(nn.Module):
    """Images -> logits from any module: the module is the `backbone` (it already ends in its
    classifier), the head is the identity. Freezing and head replacement are the user's."""

    def __init__(self, module: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = module
        self.head = nn.Identity()
        self._num_classes = num_classes
        self.name = type(module).__name__
        self.variant = "a user's own module"
        self.preprocess = None

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)
