"""TensorBoard event files for a run, alongside metrics.csv:

    <run_dir>/tensorboard/train/        batch_loss (every N steps), lr/<group> (every N steps),
                                        epoch_loss, epoch_accuracy, epoch, grad_norm/<layer>
    <run_dir>/tensorboard/validation/   epoch_loss, epoch_accuracy
    <run_dir>/tensorboard/test/         accuracy, loss, confusion_matrix (image), at the end

    tensorboard --logdir runs            # every run; train and validation curves overlaid

The layout is Keras' (one TensorBoard "run" per split, the same tags), so the train and
validation curves of a tag share a chart.

Steps: every event's step is the number of optimizer steps completed when it was written
(Lightning's `trainer.global_step` after the step): batch events at the step they follow,
epoch events at the last step of their epoch, the test report at the final step. Steps are
then strictly increasing per tag, and a resumed run writes exactly the steps an uninterrupted
one would. A checkpoint at step G holds everything logged up to G (the writers are flushed in
`on_save_checkpoint`); a process killed later may have written steps above G, which its resume
writes again. Both TensorBoard readers drop those orphans: the resumed writers start with a
`SessionLog.START` at G + 1 (`purge_step`), which the Python reader honours by discarding
everything at or above it, and the Rust data server discards, per tag, the records at or above
the step of each new record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from cnnlab.errors import ConfigError

TB_DIR = "tensorboard"
SPLITS = ("train", "validation")


def require_tensorboard() -> Any:
    """torch's SummaryWriter, or a one-line ConfigError saying how to install it (checked when
    the run is planned, before a run folder exists)."""
    try:  # imports tensorboard itself: only when asked for
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            '--logger tensorboard needs the tensorboard package: pip install "cnnlab[tensorboard]"'
            ", or drop --logger tensorboard (metrics.csv is always written)"
        ) from None
    return SummaryWriter


def _writer(folder: Path, purge_step: int | None = None) -> Any:
    return require_tensorboard()(str(folder), purge_step=purge_step)


class TensorBoardWriter(Callback):
    def __init__(self, run_dir: Path, *, every_n_steps: int = 10, histograms: bool = True) -> None:
        self.folder = Path(run_dir) / TB_DIR
        self.every_n_steps = max(1, int(every_n_steps))
        self.histograms = histograms
        self.writers: dict[str, Any] = {}
        self.last_step = 0
        self._epoch: int | None = None
        # per optimizer step, per layer gradient norms of the running epoch, kept on the device
        self._norms: list[tuple[tuple[str, ...], torch.Tensor]] = []
        self._prior: dict[str, list[float]] = {}  # the same, restored from a mid-epoch save
        self._restored: dict[str, Any] | None = None

    # -- checkpoint state: the running epoch's gradient norms, so a mid-epoch resume has them

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "grad_norms": self._norms_by_layer()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = state

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # everything logged up to this step is on disk before the checkpoint claims it
        for w in self.writers.values():
            w.flush()

    # -- lifecycle

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        self.last_step = step
        if trainer.is_global_zero:
            # events above the restored step were written after the checkpoint: orphans
            self.writers = {s: _writer(self.folder / s, purge_step=step + 1) for s in SPLITS}
        restored, self._restored = self._restored, None
        self._epoch, self._norms, self._prior = trainer.current_epoch, [], {}
        if restored and restored.get("epoch") == trainer.current_epoch:
            # a mid-epoch resume: this epoch's steps before the checkpoint
            self._prior = {k: list(v) for k, v in (restored.get("grad_norms") or {}).items()}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch != trainer.current_epoch:
            self._epoch, self._norms, self._prior = trainer.current_epoch, [], {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.close()  # what was written stays readable; a resume purges what it redoes

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers = {}

    # -- per step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.histograms:
            return
        model = getattr(pl_module, "model", pl_module)
        named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        if not named:
            return
        names, grads = zip(*named, strict=True)
        layers = tuple(dict.fromkeys(n.rsplit(".", 1)[0] for n in names))
        index = torch.tensor([layers.index(n.rsplit(".", 1)[0]) for n in names])
        # one fused kernel for all the norms; a layer's norm is the root of its tensors' squares
        sq = torch.stack(torch._foreach_norm(grads)).float().pow(2)
        per_layer = torch.zeros(len(layers), device=sq.device).index_add_(
            0, index.to(sq.device), sq
        )
        self._norms.append((layers, per_layer.sqrt()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        self.last_step = step
        if not self.writers or step % self.every_n_steps:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        w = self.writers["train"]
        if loss is not None:
            w.add_scalar("batch_loss", float(loss), step)
        for name, lr in _group_lrs(trainer).items():
            w.add_scalar(f"lr/{name}", lr, step)

    # -- per epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if self.writers:
            m = {k: float(v) for k, v in trainer.callback_metrics.items()}
            for split, prefix in (("train", "train"), ("validation", "val")):
                for tag, key in (("epoch_loss", "loss"), ("epoch_accuracy", "acc")):
                    value = m.get(f"{prefix}_{key}")
                    if value is not None and math.isfinite(value):
                        self.writers[split].add_scalar(tag, value, step)
            self.writers["train"].add_scalar("epoch", trainer.current_epoch + 1, step)
            for layer, values in self._norms_by_layer().items():
                self.writers["train"].add_histogram(f"grad_norm/{layer}", np.asarray(values), step)
            for w in self.writers.values():
                w.flush()
        self._norms, self._prior = [], {}

    def _norms_by_layer(self) -> dict[str, list[float]]:
        """{layer: [norm per step]}; a layer missing from some steps (unfreezing) has fewer."""
        out: dict[str, list[float]] = {k: list(v) for k, v in self._prior.items()}
        for layers, row in self._norms:
            for layer, value in zip(layers, row.tolist(), strict=True):
                out.setdefault(layer, []).append(value)
        return out

    # -- at the end, called by the engine with the test report

    def log_test_report(self, report: dict[str, Any], step: int | None = None) -> None:
        write_test_report(self.folder.parent, report, self.last_step if step is None else step)


def _group_lrs(trainer: L.Trainer) -> dict[str, float]:
    """One lr per named group ("head", "backbone"); the un-decayed twins share their lr."""
    out: dict[str, float] = {}
    for i, g in enumerate(trainer.optimizers[0].param_groups if trainer.optimizers else []):
        name = str(g.get("name", f"group{i}")).removesuffix("_no_decay")
        out.setdefault(name, g["lr"])
    return out


def write_test_report(run_dir: Path, report: dict[str, Any], step: int) -> None:
    """The test report as TensorBoard events: accuracy, loss, the confusion matrix image."""
    w = _writer(Path(run_dir) / TB_DIR / "test")
    try:
        for tag in ("accuracy", "loss"):
            if isinstance(report.get(tag), int | float) and math.isfinite(report[tag]):
                w.add_scalar(tag, float(report[tag]), step)
        cm = report.get("confusion_matrix")
        if cm:
            classes = list(report.get("per_class") or range(len(cm)))
            w.add_image("confusion_matrix", confusion_image(cm, classes), step, dataformats="HWC")
    finally:
        w.close()


def confusion_image(cm: Any, classes: list[Any]) -> np.ndarray:
    """(H, W, 3) uint8: rows normalised to the true class, counts written in the cells."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    n = len(cm)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.5 * n + 2)
    fig = Figure(figsize=(size + 1, size), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    if n <= 30:  # beyond that, labels and counts are unreadable
        names = [str(c) for c in classes]
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), names)
        for i, j in zip(*np.nonzero(cm), strict=True):
            color = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
