"""The pictures of a run: learning curves (with learning-rate drops marked) and the confusion
matrix. matplotlib is imported inside the functions; figures are drawn off-screen with its Figure
API, so nothing changes pyplot's global state."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.fsio import write_with


def new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure drawn off-screen (Agg), without pyplot: no global backend switch,
    no figure registry to leak into a user's notebook."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: Path, dpi: int = 100) -> None:
    write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


def lr_drop_epochs(history: Sequence[dict[str, Any]]) -> list[int]:
    """Epochs whose learning rate is clearly below the previous epoch's (plateau/step drops)."""
    return [
        b["epoch"]
        for a, b in zip(history, history[1:], strict=False)
        if b["lr"] < a["lr"] * 0.75 and a["lr"] > 0
    ]


def plot_curves(
    history: Sequence[dict[str, Any]], path: Path, title: str = "", mark_lr_drops: bool = True
) -> None:
    """Accuracy and loss, train vs validation; `mark_lr_drops` for schedules that drop in steps
    (plateau, step), not for smooth decays (cosine, one-cycle) whose every epoch is lower."""
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig = new_figure((11, 4))
    ax_acc, ax_loss = fig.subplots(1, 2)
    for ax, key, label in ((ax_acc, "acc", "accuracy"), (ax_loss, "loss", "loss")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label=f"train {label}")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "s-", label=f"validation {label}")
        for i, e in enumerate(lr_drop_epochs(history) if mark_lr_drops else []):
            ax.axvline(e - 0.5, color="grey", ls="--", lw=1, label="lr drop" if i == 0 else None)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_title("accuracy")
    ax_loss.set_title("loss")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> None:
    cm = np.asarray(cm)
    n = len(classes)
    size = max(4.0, 0.55 * n + 2)
    fig = new_figure((size + 1, size))
    ax = fig.subplots()
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=45, ha="right")
        ax.set_yticks(range(n), classes)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    save_figure(fig, path)
