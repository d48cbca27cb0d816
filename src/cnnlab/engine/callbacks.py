"""Callbacks in the Keras vocabulary on Lightning mechanics; each one's state round-trips through
checkpoints so that a resumed run continues its history, its best score and its position.

- `RunRecorder`: per-epoch history -> metrics.csv (with the training compute so far, in TFLOP),
  per-layer gradient norms and the predicted-class histogram -> signals.jsonl, one printed line
  per epoch (survives in logs).
- `RunCheckpoint`: best.ckpt + model.safetensors when the monitored metric improves, last.ckpt
  (previous kept as last.prev.ckpt) every epoch and every N steps, and a checkpoint on Ctrl-C /
  SIGTERM at the next step boundary.
- `BackboneUnfreeze`: the two-stage fine-tuning recipe (head first, then everything).
- `EpochProgressBar`: the batch progress bar, epochs counted from 1 like everywhere else.
- `DoctorCheck`: the doctor's cheap checks after each epoch; an error says so at once.

Epochs are counted from 1 in every file and message (metrics.csv, signals.jsonl, run.json's
best_epoch, the epoch lines); Lightning's own `current_epoch` (from 0) stays inside the engine.
`make_callbacks(plan, ...)` builds the set a run uses.
"""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping, TQDMProgressBar

from cnnlab.engine.checkpoint import BEST, LAST
from cnnlab.errors import InterruptedRun
from cnnlab.fsio import write_text

if TYPE_CHECKING:
    from cnnlab.plan import RunPlan

METRIC_COLUMNS = [
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "lr_backbone",
    "grad_norm", "epoch_time_s", "images_per_s", "train_tflop",
]  # fmt: skip
# Per-layer gradient norms are sampled every GRAD_NORM_EVERY-th step: the doctor needs their
# scale, not every value, and on VGG16 every step cost 1.6% of the step (RESULTS.md).
GRAD_NORM_EVERY = 10


def _lrs(trainer: L.Trainer) -> tuple[float, float]:
    lrs = {g.get("name", ""): g["lr"] for g in trainer.optimizers[0].param_groups}
    head = lrs.get("head", next(iter(lrs.values())))
    return head, lrs.get("backbone", head)


class RunRecorder(Callback):
    def __init__(
        self,
        run_dir: Path,
        *,
        log: Callable[[str], None] = print,
        input_shape: tuple[int, int, int] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.say = log
        self.flops = TrainingFlops(input_shape, log)
        self.history: list[dict[str, Any]] = []
        self.signals: list[dict[str, Any]] = []
        self._grad_sq: torch.Tensor | None = None
        self._grad_names: tuple[str, ...] = ()
        self._steps = 0
        self._images = 0

    def state_dict(self) -> dict[str, Any]:
        # the running epoch's accumulators too, so a mid-epoch resume records the same row
        partial = {
            "epoch": getattr(self, "_epoch", None),
            "lr": list(getattr(self, "_lr", ())),
            "grad_sq": None if self._grad_sq is None else self._grad_sq.cpu().tolist(),
            "grad_names": list(self._grad_names),
            "steps": self._steps,
            "images": self._images,
            "computed": self.flops.computed_at_start,
        }
        return {"history": self.history, "signals": self.signals, "partial": partial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self.signals = list(state.get("signals", []))
        self._restored = state.get("partial")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a mid-epoch resume skips on_train_epoch_start: start the epoch here, with its sums
        self.on_train_epoch_start(trainer, pl_module)
        part, self._restored = getattr(self, "_restored", None), None
        if part and part["epoch"] == self._epoch:
            self._lr = tuple(part["lr"])
            self._images = part.get("images", 0)
            self.flops.computed_at_start = part.get("computed", 0)
            if part["grad_sq"] is not None:
                self._grad_sq = torch.tensor(part["grad_sq"], device=pl_module.device)
                self._grad_names, self._steps = tuple(part["grad_names"]), part["steps"]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._epoch = trainer.current_epoch + 1
        self._lr = _lrs(trainer)
        self._grad_sq, self._steps, self._images = None, 0, 0
        self.flops.epoch_start(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[1]) * trainer.world_size

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % GRAD_NORM_EVERY:
            return
        named = [(n, p.grad) for n, p in pl_module.model.named_parameters() if p.grad is not None]
        if not named:
            return
        names, grads = zip(*named, strict=True)
        # one fused kernel per step, kept on the device until the epoch ends
        sq = torch.stack(torch._foreach_norm(grads)).float().pow(2)
        if self._grad_sq is None or self._grad_names != names:  # (un)freezing changes the set
            self._grad_sq, self._grad_names, self._steps = torch.zeros_like(sq), names, 0
        self._grad_sq += sq
        self._steps += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        elapsed = time.perf_counter() - self._t0
        layer_norms = self._layer_grad_norms(pl_module)
        row = {
            "epoch": self._epoch,
            "train_loss": m.get("train_loss", math.nan),
            "train_acc": m.get("train_acc", math.nan),
            "val_loss": m.get("val_loss", math.nan),
            "val_acc": m.get("val_acc", math.nan),
            "lr": self._lr[0],
            "lr_backbone": self._lr[1],
            "grad_norm": layer_norms.pop("total", math.nan),
            "epoch_time_s": round(elapsed, 3),
            "images_per_s": round(self._images / elapsed, 1) if elapsed > 0 else math.nan,
            "train_tflop": (self.history[-1].get("train_tflop", 0.0) if self.history else 0.0)
            + self.flops.epoch(pl_module, self._images) / 1e12,
        }
        self.history = [h for h in self.history if h["epoch"] < row["epoch"]] + [row]
        self.signals = [s for s in self.signals if s["epoch"] < row["epoch"]]
        self.signals.append(
            {
                "epoch": row["epoch"],
                "grad_norm_per_layer": layer_norms,
                "val_pred_histogram": pl_module.pred_histogram(),
                "lr": list(self._lr),
            }
        )
        if trainer.is_global_zero:  # only rank 0 writes the run folder
            self.write()
            line = self.epoch_line(row, trainer.max_epochs, self.eta(trainer.max_epochs))
            bar = trainer.progress_bar_callback
            # through the bar when there is one, so the line does not land inside it
            if bar is not None and self.say is print:
                bar.print(line)
            else:
                self.say(line)

    def _layer_grad_norms(self, pl_module: L.LightningModule) -> dict[str, float]:
        if self._grad_sq is None or self._steps == 0:
            return {}
        mean_sq = (self._grad_sq / self._steps).tolist()
        per_layer: dict[str, float] = {}
        for name, sq in zip(self._grad_names, mean_sq, strict=True):
            layer = name.rsplit(".", 1)[0]
            per_layer[layer] = per_layer.get(layer, 0.0) + sq
        out = {k: round(math.sqrt(v), 6) for k, v in per_layer.items()}
        return {"total": round(math.sqrt(sum(mean_sq)), 6), **out}

    def write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: _fmt(row[k]) for k in METRIC_COLUMNS})
        write_text(self.run_dir / "metrics.csv", buf.getvalue())
        lines = "".join(json.dumps(s) + "\n" for s in self.signals)
        write_text(self.run_dir / "signals.jsonl", lines)

    def eta(self, max_epochs: int) -> float | None:
        """Seconds until max_epochs at the mean pace of the epochs so far (None when done)."""
        times = [h["epoch_time_s"] for h in self.history]
        left = max_epochs - self.history[-1]["epoch"] if self.history else 0
        return sum(times) / len(times) * left if times and left > 0 else None

    @staticmethod
    def epoch_line(row: dict[str, Any], max_epochs: int, eta: float | None = None) -> str:
        line = (
            f"epoch {row['epoch']}/{max_epochs}  "
            f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} | "
            f"lr {row['lr']:.3g} | {row['epoch_time_s']:.1f}s ({row['images_per_s']:,.0f} img/s)"
        )
        return line if eta is None else f"{line} | ETA {format_duration(eta)}"


def format_duration(seconds: float) -> str:
    """'45s', '3m05s', '1h02m': short enough for the end of a log line."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class TrainingFlops:
    """Training compute of an epoch: forward + backward FLOPs per image (engine/flops.py, counted
    on the meta device) times the images trained on. With a cached frozen backbone the epoch
    costs the head's step per image plus one backbone forward per image computed that epoch."""

    def __init__(self, input_shape: tuple[int, int, int] | None, log: Callable[[str], None]):
        self.input_shape = input_shape
        self.say = log
        self.computed_at_start = 0
        self._costs: dict[tuple[str, bool], float] = {}

    def _cache(self, pl_module: L.LightningModule) -> Any:
        caches = getattr(pl_module, "feature_caches", None) or {}
        return caches.get("train") if getattr(pl_module, "backbone_frozen", False) else None

    def epoch_start(self, pl_module: L.LightningModule) -> None:
        cache = self._cache(pl_module)
        self.computed_at_start = cache.computed if cache is not None else 0

    def _cost(self, key: tuple[str, bool], count: Callable[[], int]) -> float:
        if key not in self._costs:
            try:
                self._costs[key] = float(count())
            except Exception as e:  # an op the meta device cannot run: say so, count nothing
                self.say(f"note: training FLOPs not counted ({type(e).__name__}: {e})"[:200])
                self._costs[key] = math.nan
        return self._costs[key]

    def epoch(self, pl_module: L.LightningModule, images: int) -> float:
        from cnnlab.engine.flops import forward_flops_per_image, train_flops_per_image

        if self.input_shape is None:
            return math.nan
        model, frozen = pl_module.model, bool(getattr(pl_module, "backbone_frozen", False))
        cache = self._cache(pl_module)
        if cache is None:
            step = ("model", frozen)
            return images * self._cost(step, lambda: train_flops_per_image(model, self.input_shape))
        head = self._cost(
            ("head", True), lambda: train_flops_per_image(model.head, (model.num_features,))
        )
        backbone = self._cost(
            ("backbone", True), lambda: forward_flops_per_image(model.backbone, self.input_shape)
        )
        return images * head + (cache.computed - self.computed_at_start) * backbone


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


class StopRequest:
    """Ctrl-C / SIGTERM set a flag; training stops at the next step boundary with a checkpoint.
    A second Ctrl-C interrupts at once (the last completed checkpoint is still intact)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                return

    def take_sigterm(self) -> None:
        """SIGTERM to this handler alone. Lightning adds its own handler at the start of `fit`,
        whose flag makes its loops raise `SIGTERMException` (a SystemExit: exit status 0) at
        the points it checks, some of them after cnnlab's step-boundary check or in the middle
        of validation, so a SIGTERM could end a run silently with status 0 and the epoch's
        training lost. Called once Lightning's handler is in place (`RunCheckpoint.
        on_train_start`), for one process only: DDP keeps Lightning's handler, which tells the
        other ranks (engine/trainer.py turns its exception into the same interruption)."""
        if signal.SIGTERM in self._previous:  # installed, so on the main thread
            signal.signal(signal.SIGTERM, self._handler)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> StopRequest:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


class RunCheckpoint(Checkpoint):
    """Subclassing Lightning's `Checkpoint` makes Lightning run it after the other callbacks,
    so the state it saves includes their end-of-epoch updates."""

    def __init__(
        self,
        run_dir: Path,
        *,
        monitor: str,
        mode: str,
        export_best: Callable[[L.LightningModule, int], None],
        every_n_steps: int | None = None,
        stop: StopRequest | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.monitor, self.mode = monitor, mode
        self.export_best = export_best
        self.every_n_steps = every_n_steps
        self.stop = stop
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.offset: tuple[int, int] | None = None  # (epoch, batches done) of a mid-epoch save

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "offset": None if self.offset is None else list(self.offset),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")
        offset = state.get("offset")
        self._resume_offset = None if offset is None else tuple(offset)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stop is not None and trainer.world_size == 1:
            self.stop.take_sigterm()  # Lightning's SIGTERM handler is in place by now
        # Lightning restarts a mid-epoch checkpoint without calling on_train_epoch_start and
        # re-iterates the loader from its start: the sampler skips what was already trained.
        resume = getattr(self, "_resume_offset", None)
        self._resume_offset = None
        if resume and resume[0] == trainer.current_epoch:
            loader = trainer.train_dataloader
            sampler = getattr(loader, "sampler", None)
            if hasattr(sampler, "skip"):
                sampler.skip = resume[1] * loader.batch_size

    def _save_last(self, trainer: L.Trainer) -> None:
        # the previous last.ckpt becomes last.prev.ckpt once the new one is complete
        # (AtomicCheckpointIO), so a failed write never loses it
        trainer.save_checkpoint(self.run_dir / LAST, weights_only=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        due = self.every_n_steps and trainer.global_step % self.every_n_steps == 0
        stopping = self.stop is not None and self.stop.requested
        if last_batch or not (due or stopping):
            return  # the end-of-epoch save covers the last batch
        # Lightning's batch_idx continues from the restored count after a mid-epoch resume
        self.offset = (trainer.current_epoch, batch_idx + 1)
        self._save_last(trainer)
        self.offset = None
        if stopping:
            raise InterruptedRun(f"interrupted by {self.stop.requested}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        if score is not None and math.isfinite(float(score)):
            score = float(score)
            better = self.best_score is None or (
                score > self.best_score if self.mode == "max" else score < self.best_score
            )
            if better:
                self.best_score, self.best_epoch = score, trainer.current_epoch + 1
                trainer.save_checkpoint(self.run_dir / BEST, weights_only=True)
                if trainer.is_global_zero:
                    self.export_best(pl_module, self.best_epoch)
        self._save_last(trainer)
        if self.stop is not None and self.stop.requested:
            raise InterruptedRun(f"interrupted by {self.stop.requested}")


class BackboneUnfreeze(Callback):
    """Train the head alone for `unfreeze_at` epochs, then the whole network (Keras' two-stage
    recipe)."""

    def __init__(self, unfreeze_at: int | None) -> None:
        self.unfreeze_at = unfreeze_at

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = self.unfreeze_at is not None and trainer.current_epoch >= self.unfreeze_at
        if due and pl_module.backbone_frozen:
            pl_module.set_backbone_frozen(False)
            trainer.print(
                f"epoch {trainer.current_epoch + 1}: backbone unfrozen after {self.unfreeze_at} "
                f"head-only epochs"
            )


class EpochProgressBar(TQDMProgressBar):
    """Lightning's bar, with epochs counted from 1 of the total ("epoch 1/6")."""

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        )


class DoctorCheck(Callback):
    """After each epoch, `cnnlab.doctor.epoch_check` on what the recorder holds (history and
    signals): an error-level finding (e.g. loss at ln C with every validation image in one
    class) is printed as one line at once, once per code, instead of after the last epoch."""

    def __init__(
        self,
        recorder: RunRecorder,
        *,
        config: Any,
        classes: list[str],
        class_counts: dict[str, list[int]] | None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.recorder, self.config, self.say = recorder, config, log
        self.classes, self.class_counts = list(classes), class_counts
        self.said: set[str] = set()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from cnnlab.doctor import Severity, epoch_check, one_line

        if not trainer.is_global_zero:
            return
        findings = epoch_check(
            self.recorder.history, self.recorder.signals, num_classes=len(self.classes),
            class_counts=self.class_counts, config=self.config, classes=self.classes,
            run_dir=self.recorder.run_dir,
        )  # fmt: skip
        for f in findings:
            if f.severity is Severity.ERROR and f.code.value not in self.said:
                self.said.add(f.code.value)
                line = f"epoch {self.recorder.history[-1]['epoch']}: {one_line(f)}"
                bar = trainer.progress_bar_callback
                if bar is not None and self.say is print:  # not inside the bar's line
                    bar.print(line)
                else:
                    self.say(line)


@dataclass
class RunCallbacks:
    """The callbacks of one run, by role; `all` is what the Trainer gets, in order."""

    recorder: RunRecorder
    early: EarlyStopping
    checkpoint: RunCheckpoint
    unfreeze: BackboneUnfreeze
    stop: StopRequest
    progress: EpochProgressBar | None = None
    extra: list[Callback] = field(default_factory=list)
    doctor: DoctorCheck | None = None
    tensorboard: Callback | None = None  # --logger tensorboard: engine/tensorboard.py

    @property
    def all(self) -> list[Callback]:
        # the recorder first: later callbacks (user ones too) see the finished epoch row;
        # RunCheckpoint is a Checkpoint, which Lightning always runs last
        checks = [self.doctor] if self.doctor else []
        core = [self.recorder, *checks, self.early, self.checkpoint, self.unfreeze, *self.extra]
        core += [self.tensorboard] if self.tensorboard else []
        return core + ([self.progress] if self.progress else [])

    def stop_reason(self, patience: int) -> str:
        if self.early.stopped_epoch > 0 and self.early.patience < 10**9:
            return f"early stop ({self.early.monitor} did not improve for {patience} epochs)"
        return "max epochs"


def make_callbacks(
    plan: RunPlan,
    *,
    export_best: Callable[[L.LightningModule, int], None],
    log: Callable[[str], None] = print,
    progress: bool = False,
    extra: Sequence[Callback] = (),
    data: Any = None,
) -> RunCallbacks:
    """`data` (the run's DataBundle: classes and class counts) enables the per-epoch doctor."""
    t = plan.config.train
    mode = "max" if t.monitor == "val_acc" else "min"
    stop = StopRequest()
    recorder = RunRecorder(
        plan.run_dir,
        log=log,
        input_shape=(plan.inputs.in_chans, plan.inputs.image_size, plan.inputs.image_size),
    )
    doctor = None
    if data is not None:
        doctor = DoctorCheck(recorder, config=plan.config, classes=data.classes,
                             class_counts=data.class_counts, log=log)  # fmt: skip
    return RunCallbacks(
        recorder=recorder,
        early=EarlyStopping(
            monitor=t.monitor,
            mode=mode,
            patience=t.patience if t.early_stopping else 10**9,
            min_delta=t.min_delta,
            check_finite=True,
        ),  # fmt: skip
        checkpoint=RunCheckpoint(
            plan.run_dir,
            monitor=t.monitor,
            mode=mode,
            export_best=export_best,
            every_n_steps=t.checkpoint_every_n_steps,
            stop=stop,
        ),  # fmt: skip
        unfreeze=BackboneUnfreeze(plan.config.model.unfreeze_at),
        stop=stop,
        progress=EpochProgressBar(leave=False) if progress else None,
        extra=list(extra),
        doctor=doctor,
        tensorboard=_tensorboard(plan),
    )


def _tensorboard(plan: RunPlan) -> Callback | None:
    if plan.config.train.logger != "tensorboard":
        return None
    from cnnlab.engine.tensorboard import TensorBoardWriter

    return TensorBoardWriter(plan.run_dir)
