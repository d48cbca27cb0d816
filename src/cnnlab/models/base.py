"""One shape for every network: `backbone` (image -> feature vector) + `head` (dropout, linear).

Heads, freezing and fine-tuning then never depend on per-family attribute names
(`classifier[6]`, `fc`, `head.fc`...): replacing the top is `reset_classifier(n)`, freezing the
base is freezing `backbone`.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.spec import PreprocessSpec


class CnnClassifier(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_classes: int,
        dropout: float = 0.0,
        *,
        name: str = "",
        variant: str = "",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = num_features
        self.head = _make_head(num_features, num_classes, dropout)
        self.name = name
        # A sentence saying how this build differs from the paper's (small-input stem, ...).
        self.variant = variant
        self.preprocess: PreprocessSpec | None = None

    @property
    def num_classes(self) -> int:
        return self.head[-1].out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # (N, num_features)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (N, num_classes) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, dropout: float | None = None) -> None:
        p = self.head[0].p if dropout is None else dropout
        self.head = _make_head(self.num_features, num_classes, p)


def _make_head(num_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes))
