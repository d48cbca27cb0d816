"""The report's learning curves, drawn fresh with matplotlib's Figure API (no pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from cnnlab.evaluation.plots import lr_drop_epochs


def curves_png(
    history: Sequence[dict[str, Any]], *, best_epoch: int | None, mark_lr_drops: bool
) -> bytes:
    """Loss, accuracy and learning rate per epoch, side by side; the best epoch (counted from 1,
    as everywhere) marked in all three, learning-rate drops too for plateau/step schedules."""
    from matplotlib.ticker import MaxNLocator

    from cnnlab.evaluation.plots import new_figure

    epochs = [h["epoch"] for h in history]
    drops = lr_drop_epochs(history) if mark_lr_drops else []
    fig = new_figure((12, 3.6))
    fig.set_dpi(90)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
        for split, marker in (("train", "o-"), ("val", "s-")):
            values = [h.get(f"{split}_{key}") for h in history]
            label = "validation" if split == "val" else split
            ax.plot(epochs, values, marker, ms=4, label=label)
    ax_lr.plot(epochs, [h.get("lr") for h in history], "o-", ms=4, color="C2", label="lr")
    if any(h.get("lr_backbone") not in (None, h.get("lr")) for h in history):
        lrb = [h.get("lr_backbone") for h in history]
        ax_lr.plot(epochs, lrb, "o--", ms=3, color="C4", label="backbone lr")
    if all((h.get("lr") or 0) > 0 for h in history):
        ax_lr.set_yscale("log")
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy"), (ax_lr, "learning rate")):
        for i, e in enumerate(drops):
            ax.axvline(e - 0.5, color="grey", ls="--", lw=1, label="lr drop" if i == 0 else None)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="C3", ls=":", lw=1.5, label="best epoch")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
