"""An epoch's running mean, as two sums: what the training and validation steps update.

`torchmetrics.Accuracy` and `MeanMetric` cost 0.7 ms per training step between them on a
2-vCPU AMD EPYC (argument formatting, per-class stat scores, NaN filtering): about 1.4% of a
smallcnn step. Two sums give the same numbers (micro accuracy = correct / seen, the loss
weighted by batch size), reduce exactly across DDP ranks (sum states), and let a NaN loss
stay NaN, so a diverged validation is caught instead of filtered out.
"""

from __future__ import annotations

from typing import Any

import torch
import torchmetrics


class EpochMean(torchmetrics.Metric):
    """sum(total) / sum(count) since the last reset: update(loss * n, n) or update(correct, n)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        # float64: a sum over an epoch of millions of images keeps its last digits
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, total: torch.Tensor, count: int) -> None:
        # in place: `+=` would also re-register each state through Module.__setattr__
        self.total.add_(total)
        self.count.add_(count)

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()


def correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == y).sum()


def from_torchmetrics(state: dict[str, Any], prefix: str) -> None:
    """Rewrite a checkpoint's running `Accuracy` (tp, fp, tn, fn) or `MeanMetric` (mean_value,
    weight) states at `prefix` into EpochMean's, in place: a run interrupted mid-epoch by an
    earlier cnnlab resumes with its epoch's averages."""
    if f"{prefix}.tp" in state:
        tp, fn = state.pop(f"{prefix}.tp"), state.pop(f"{prefix}.fn")
        state.pop(f"{prefix}.fp"), state.pop(f"{prefix}.tn")
        state[f"{prefix}.total"] = tp.sum().double()
        state[f"{prefix}.count"] = (tp.sum() + fn.sum()).double()
    elif f"{prefix}.mean_value" in state:
        state[f"{prefix}.total"] = state.pop(f"{prefix}.mean_value").double()
        state[f"{prefix}.count"] = state.pop(f"{prefix}.weight").double()
