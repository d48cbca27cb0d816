"""Wires a config, a DataBundle and a model into a Lightning Trainer and runs `fit`.

Distributed runs: `devices > 1` or `num_nodes > 1` use DDP (gloo on CPU, NCCL on CUDA). Under
torchrun or SLURM, Lightning reads the rank from the environment; otherwise CPU runs fork their
workers (`ddp_fork`) and CUDA runs re-launch the command once per GPU (`ddp`). Only rank 0
writes the run folder; metrics are reduced across ranks; evaluation counts each sample once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from cnnlab.config import Config
from cnnlab.data.bundle import DataBundle, IndexedDataset
from cnnlab.engine.callbacks import make_callbacks
from cnnlab.engine.checkpoint import AtomicCheckpointIO
from cnnlab.engine.devices import launched
from cnnlab.engine.feature_cache import FeatureCache, SharedEncoder
from cnnlab.engine.module import ClassifierModule
from cnnlab.engine.rendezvous import RendezvousGuard, setup_error, timeout_s
from cnnlab.engine.samplers import EpochSampler, ShardSampler
from cnnlab.errors import ConfigError, InterruptedRun
from cnnlab.models.base import CnnClassifier

if TYPE_CHECKING:
    from cnnlab.plan import RunPlan


class BundleDataModule(L.LightningDataModule):
    """Builds rank-aware loaders once Lightning knows the rank (after the DDP launch)."""

    def __init__(self, bundle: DataBundle, cfg: Config) -> None:
        super().__init__()
        self.bundle, self.cfg = bundle, cfg

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # a DataLoader's batch is already on the CPU: skip Lightning's walk over its tensors
        # (0.2-0.3 ms per step on 2 AMD EPYC vCPUs, 0.5% of a smallcnn step). Here, not in the
        # LightningModule, where Lightning warns on every fit that two hooks could transfer.
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _loader(self, dataset, sampler, shuffle_workers: bool = False) -> DataLoader:
        d = self.cfg.data
        return DataLoader(
            dataset,
            batch_size=self._per_rank_batch(),
            sampler=sampler,
            num_workers=d.workers,
            # pinning only helps host-to-GPU copies
            pin_memory=torch.cuda.is_available() and self.cfg.train.device != "cpu",
            # datasets keep their epoch in shared memory, so workers can live across epochs
            persistent_workers=d.workers > 0,
            drop_last=False,
        )

    def _per_rank_batch(self) -> int:
        world = self.trainer.world_size if self.trainer else 1
        if self.cfg.data.batch_size % world:
            raise ConfigError(
                f"batch size {self.cfg.data.batch_size} does not split over {world} processes; "
                f"use a multiple of {world}"
            )
        return self.cfg.data.batch_size // world

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        weights = None
        if self.cfg.data.balance == "sampler":
            counts = np.bincount(self.bundle.train.targets, minlength=len(self.bundle.classes))
            weights = 1.0 / np.maximum(counts, 1)[np.asarray(self.bundle.train.targets)]
        sampler = EpochSampler(
            len(self.bundle.train), seed=self.cfg.train.seed, rank=rank, world=world,
            weights=weights, dataset=self.bundle.train,
        )  # fmt: skip
        return self._loader(self.bundle.train, sampler)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        return self._loader(self.bundle.val, ShardSampler(len(self.bundle.val), rank, world))


@dataclass
class FitResult:
    stop_reason: str
    best_epoch: int | None
    best_score: float | None
    epochs_run: int
    wall_time_s: float
    history: list[dict]
    global_step: int = 0  # optimizer steps done: the step of what is logged after the fit


def cache_features(cfg: Config) -> bool:
    """Features are reusable only while the backbone is frozen for good and inputs never vary."""
    return (
        cfg.model.freeze_backbone and cfg.model.unfreeze_at is None and cfg.data.augment == "none"
    )


def fit(
    plan: RunPlan,
    bundle: DataBundle,
    model: CnnClassifier,
    *,
    export_best: Callable[[L.LightningModule, int], None],
    log: Callable[[str], None] = print,
    callbacks: Sequence[Callback] = (),
    on_joined: Callable[[], None] | None = None,
    on_interrupt: Callable[[str], None] | None = None,
) -> FitResult:
    """Train `model` on `bundle` as `plan` says; `callbacks` are the user's own (Lightning ones,
    or Keras-style ones wrapped by `cnnlab.callbacks`). `on_joined()` runs once this process's
    part of the run has started (the processes of a distributed run have joined);
    `on_interrupt(signal name)` runs when Ctrl-C or SIGTERM ends the wait for them, just before
    the process exits with 130."""
    cfg, t = plan.config, plan.config.train
    caches = None
    if cache_features(cfg):
        bundle = dataclasses.replace(
            bundle, train=IndexedDataset(bundle.train), val=IndexedDataset(bundle.val)
        )
        # the one backbone pass runs on a folded, inference-mode copy (models/fold.py)
        encoder = SharedEncoder(model.backbone, channels_last=cfg.model.channels_last)
        caches = {
            "train": FeatureCache(len(bundle.train), encoder=encoder),
            "val": FeatureCache(len(bundle.val), encoder=encoder),
        }
        log("frozen backbone, no augmentation: backbone features are computed once and cached")
    progress = interactive_output()
    module = build_module(cfg, bundle, model, feature_caches=caches, progress_bar=progress)
    from cnnlab.callbacks import bridge

    run_callbacks = make_callbacks(
        plan, export_best=export_best, log=log, progress=progress, extra=bridge(list(callbacks)),
        data=bundle,
    )  # fmt: skip
    guard = RendezvousGuard(
        on_signal=on_interrupt, on_joined=on_joined,
        requested=lambda: run_callbacks.stop.requested,
    )  # fmt: skip
    # under a launcher this process waits in C++ for the others; elsewhere nothing waits long
    waits = plan.device.strategy != "auto" and launched()
    start = time.perf_counter()
    with quiet_lightning(), flush_denormal(plan.device.accelerator == "cpu"), run_callbacks.stop:
        trainer = _trainer(plan, [*run_callbacks.all, guard], progress, module.steps_per_epoch)
        with guard.watching() if waits else contextlib.nullcontext():
            try:
                trainer.fit(
                    module, datamodule=BundleDataModule(bundle, cfg), ckpt_path=plan.resume_from
                )
            except SIGTERM_EXCEPTION:
                # Lightning's own SIGTERM check came first (DDP, or the sanity check before
                # `StopRequest.take_sigterm`): the same interruption as cnnlab's, from the
                # last checkpoint, not the SystemExit (status 0) Lightning raises
                stopped = run_callbacks.stop.requested or "SIGTERM"
                raise InterruptedRun(f"interrupted by {stopped}") from None
            except DIST_ERRORS as e:
                if guard.joined.is_set():
                    raise
                raise setup_error(e, t.devices * t.num_nodes) from None
    recorder, checkpoint = run_callbacks.recorder, run_callbacks.checkpoint
    return FitResult(
        stop_reason=run_callbacks.stop_reason(t.patience),
        best_epoch=checkpoint.best_epoch,
        best_score=checkpoint.best_score,
        epochs_run=len(recorder.history),
        wall_time_s=time.perf_counter() - start,
        history=recorder.history,
        global_step=trainer.global_step,
    )


def build_module(
    cfg: Config,
    bundle: DataBundle,
    model: CnnClassifier,
    *,
    feature_caches: dict[str, FeatureCache] | None = None,
    progress_bar: bool = False,
) -> ClassifierModule:
    """The LightningModule a run trains (`fit`) and the lr finder sweeps (`cnnlab.lr_search`):
    one construction, so the sweep sees the run's optimizer, loss, transform and freezing."""
    t = cfg.train
    steps_per_epoch = -(-len(bundle.train) // cfg.data.batch_size)
    return ClassifierModule(
        model, cfg.optim, epochs=t.epochs, steps_per_epoch=steps_per_epoch, seed=t.seed,
        class_weights=bundle.class_weights if cfg.data.balance == "weights" else None,
        channels_last=cfg.model.channels_last, batch_transform=bundle.batch_transform,
        bn_eval=cfg.model.bn_eval, monitor=t.monitor, freeze_backbone=cfg.model.freeze_backbone,
        feature_caches=feature_caches, progress_bar=progress_bar,
    )  # fmt: skip


# the errors of a rendezvous that did not complete (absent where torch lacks distributed)
DIST_ERRORS = getattr(torch.distributed, "DistError", ())
# what Lightning's loops raise after its SIGTERM handler ran: a SystemExit (absent: nothing)
SIGTERM_EXCEPTION = getattr(L.pytorch.utilities.exceptions, "SIGTERMException", ())


def _trainer(
    plan: RunPlan, callbacks: list[Callback], progress: bool, steps_per_epoch: int
) -> L.Trainer:
    t = plan.config.train
    return L.Trainer(
        max_epochs=t.epochs,
        accelerator=plan.device.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=_strategy(plan),
        precision=t.precision,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=t.deterministic,
        sync_batchnorm=t.sync_batchnorm,
        use_distributed_sampler=False,
        default_root_dir=str(plan.run_dir),
        log_every_n_steps=max(1, steps_per_epoch),
    )


def _strategy(plan: RunPlan) -> Any:
    if plan.device.strategy == "auto":
        return "auto"
    from lightning.pytorch.strategies import DDPStrategy

    # a rendezvous that never completes (a node that never starts) ends with an error
    timeout = dt.timedelta(seconds=timeout_s())
    fork = plan.device.strategy == "ddp_fork"
    return DDPStrategy(start_method="fork" if fork else "popen", timeout=timeout)


def interactive_output() -> bool:
    """Progress bars on a terminal and in notebooks; plain epoch lines in logs and pipes."""
    if sys.stderr.isatty():
        return True
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return type(ip).__name__ == "ZMQInteractiveShell"


@contextlib.contextmanager
def flush_denormal(enabled: bool) -> Iterator[None]:
    """Denormal floats (tiny gradients and activations) are up to 10x slower on x86 CPUs;
    flushing them to zero changes no result that matters and keeps runs deterministic. Scoped:
    the process-wide flag is off again after training."""
    if not enabled:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Our own per-epoch line says what matters; Lightning's banners and tips do not. Scoped to
    the fit: logger levels and warning filters are restored afterwards."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    levels = {n: logging.getLogger(n).level for n in names}
    with warnings.catch_warnings():
        for name in names:
            logging.getLogger(name).setLevel(logging.WARNING)
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


QUIET_WARNINGS = (
    ".*LeafSpec.*",
    ".*does not have many workers.*",
    # our sampler skips the batches a mid-epoch checkpoint already trained (RunCheckpoint)
    ".*your dataloader is not resumable.*",
    # a frozen backbone is in eval mode on purpose (its BatchNorm statistics stay fixed)
    ".*module\\(s\\) in eval mode.*",
    # intended: the module normalises uint8 batches on the device, whatever the data module
    ".*overridden `on_after_batch_transfer`.*",
    # torchmetrics already reduced these across ranks in compute()
    ".*when logging on epoch level in distributed.*",
)
