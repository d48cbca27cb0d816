"""Callbacks in Keras' vocabulary, for `cnnlab.train(callbacks=[...])` and `cnnlab.fit`.

    class PrintBest(cnnlab.Callback):
        def on_epoch_end(self, epoch, logs):
            if logs["val_acc"] > 0.9:
                print(f"epoch {epoch}: {logs['val_acc']:.3f}")
                self.stop_training()          # like Keras' model.stop_training = True

    cnnlab.train(epochs=10, callbacks=[PrintBest()])

Epochs are counted from 1, as in every cnnlab file and message; `logs` is the epoch's row of
metrics.csv (train_loss, train_acc, val_loss, val_acc, lr, ...). Lightning callbacks can be
passed in the same list. What cnnlab runs anyway, by their Keras names: `RunRecorder` (History +
CSVLogger: metrics.csv, signals.jsonl), `RunCheckpoint` (ModelCheckpoint + BackupAndRestore:
best.ckpt, last.ckpt, model.safetensors), Lightning's `EarlyStopping`, the plateau schedule
(ReduceLROnPlateau) and the divergence stop (TerminateOnNaN).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L

from cnnlab.engine.callbacks import RunCheckpoint, RunRecorder

__all__ = ["Callback", "LambdaCallback", "RunCheckpoint", "RunRecorder", "bridge"]


class Callback:
    """Override the hooks you need. `self.model` is the network being trained and
    `self.run_dir` the run folder, both set before `on_train_begin`."""

    model: Any = None
    run_dir: Path | None = None
    _stop = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None: ...
    def on_train_end(self, logs: dict[str, Any] | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None: ...

    def stop_training(self) -> None:
        """End training after this epoch (the run finishes normally: best model, test, report)."""
        self._stop = True


class LambdaCallback(Callback):
    """Keras' LambdaCallback: `LambdaCallback(on_epoch_end=lambda epoch, logs: ...)`."""

    def __init__(self, **hooks: Callable[..., None]) -> None:
        for name, fn in hooks.items():
            if not hasattr(Callback, name) or not name.startswith("on_"):
                raise TypeError(f"LambdaCallback has no hook {name!r}")
            setattr(self, name, fn)


class _Bridge(L.Callback):
    """Calls a Keras-style callback from Lightning's hooks (after RunRecorder wrote the row)."""

    def __init__(self, callback: Callback) -> None:
        self.cb = callback

    def _row(self, trainer: L.Trainer) -> dict[str, Any]:
        for c in trainer.callbacks:
            if isinstance(c, RunRecorder) and c.history:
                return dict(c.history[-1])
        return {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.cb.model = pl_module.model
        self.cb.run_dir = Path(trainer.default_root_dir)
        self.cb.on_train_begin({})

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.cb.on_epoch_begin(trainer.current_epoch + 1, {})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.cb.on_train_batch_end(batch_idx, {"loss": float(loss)})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.cb.on_epoch_end(trainer.current_epoch + 1, self._row(trainer))
        if self.cb._stop:
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.cb.on_train_end(self._row(trainer))


def bridge(callbacks: list[Any] | tuple[Any, ...]) -> list[L.Callback]:
    """Lightning callbacks as they are; Keras-style ones wrapped."""
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            out.append(_Bridge(cb))
        elif isinstance(cb, L.Callback):
            out.append(cb)
        else:
            raise TypeError(
                f"callbacks must be cnnlab.Callback or lightning Callback objects, got {cb!r}"
            )
    return out
