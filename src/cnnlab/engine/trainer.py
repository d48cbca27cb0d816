"""Wires a config, a DataBundle and a model into a Lightning Trainer and runs `fit`.

Distributed runs: `devices > 1` or `num_nodes > 1` use DDP (gloo on CPU, NCCL on CUDA). Under
torchrun or SLURM, Lightning reads the rank from the environment; otherwise CPU runs fork their
workers (`ddp_fork`) and CUDA runs re-launch the command once per GPU (`ddp`). Only rank 0
writes the run folder; metrics are reduced across ranks; evaluation counts each sample once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, TQDMProgressBar
from torch.utils.data import DataLoader

from cnnlab.config import Config
from cnnlab.data.bundle import DataBundle, IndexedDataset
from cnnlab.engine.callbacks import BackboneUnfreeze, RunCheckpoint, RunRecorder, StopRequest
from cnnlab.engine.checkpoint import AtomicCheckpointIO
from cnnlab.engine.feature_cache import FeatureCache
from cnnlab.engine.module import ClassifierModule
from cnnlab.engine.samplers import EpochSampler, ShardSampler
from cnnlab.errors import ConfigError
from cnnlab.models.base import CnnClassifier


def choose_device(requested: str) -> tuple[str, str]:
    """(accelerator, why): the first sanity check a user wants to see."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "auto":
        if cuda:
            return "cuda", f"CUDA device found: {torch.cuda.get_device_name(0)}"
        if mps:
            return "mps", "Apple MPS device found (no CUDA)"
        return "cpu", f"no CUDA or MPS device found; {torch.get_num_threads()} CPU threads"
    if requested == "cuda" and not cuda:
        raise ConfigError(
            "--device cuda asked for, but no CUDA device is visible; use --device auto"
        )
    if requested == "mps" and not mps:
        raise ConfigError("--device mps asked for, but MPS is not available; use --device auto")
    return requested, "asked for with --device"


def check_accelerator_settings(cfg: Config, accelerator: str) -> list[str]:
    """Errors for settings this device cannot honour, warnings for slow ones."""
    if cfg.train.sync_batchnorm and accelerator != "cuda":
        raise ConfigError(
            "--sync-batchnorm needs CUDA devices (PyTorch's SyncBatchNorm); drop it on CPU"
        )
    return check_precision(cfg.train.precision, accelerator)


def check_precision(precision: str, accelerator: str) -> list[str]:
    if accelerator == "cpu" and precision == "16-mixed":
        raise ConfigError(
            "--precision 16-mixed needs a GPU; on a CPU use --precision 32 (or bf16-mixed on CPUs "
            "with AMX/AVX512-BF16)"
        )
    if accelerator == "cpu" and precision == "bf16-mixed":
        return ["bf16-mixed on a CPU is only faster with AMX/AVX512-BF16; often --precision 32 is"]
    return []


class BundleDataModule(L.LightningDataModule):
    """Builds rank-aware loaders once Lightning knows the rank (after the DDP launch)."""

    def __init__(self, bundle: DataBundle, cfg: Config) -> None:
        super().__init__()
        self.bundle, self.cfg = bundle, cfg

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


def cache_features(cfg: Config) -> bool:
    """Features are reusable only while the backbone is frozen for good and inputs never vary."""
    return (
        cfg.model.freeze_backbone and cfg.model.unfreeze_at is None and cfg.data.augment == "none"
    )


def _quiet_lightning() -> None:
    """Our own per-epoch line says what matters; Lightning's banners and tips do not."""
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # our sampler skips the batches a mid-epoch checkpoint already trained (RunCheckpoint)
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    # a frozen backbone is in eval mode on purpose (its BatchNorm statistics stay fixed)
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    # intended: the module normalises uint8 batches on the device, whatever the data module
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    # torchmetrics already reduced these across ranks in compute()
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed.*")


def strategy_for(cfg: Config, accelerator: str) -> str:
    t = cfg.train
    if t.devices == 1 and t.num_nodes == 1:
        return "auto"
    launched = any(k in os.environ for k in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "LOCAL_RANK"))
    if accelerator == "cpu" and not launched:
        return "ddp_fork"
    return "ddp"


def fit(
    cfg: Config,
    bundle: DataBundle,
    model: CnnClassifier,
    run_dir: Path,
    *,
    export_best: Callable[[L.LightningModule, int], None],
    resume_from: Path | None = None,
    accelerator: str = "cpu",
    log: Callable[[str], None] = print,
) -> FitResult:
    t = cfg.train
    if accelerator == "cpu":
        # Denormal floats (tiny gradients and activations) are up to 10x slower on x86 CPUs;
        # flushing them to zero changes no result that matters and keeps runs deterministic.
        torch.set_flush_denormal(True)
    steps_per_epoch = -(-len(bundle.train) // cfg.data.batch_size)
    module = ClassifierModule(
        model, cfg.optim, epochs=t.epochs, steps_per_epoch=steps_per_epoch, seed=t.seed,
        class_weights=bundle.class_weights if cfg.data.balance == "weights" else None,
        channels_last=cfg.model.channels_last, batch_transform=bundle.batch_transform,
        bn_eval=cfg.model.bn_eval,
    )  # fmt: skip
    if cfg.model.freeze_backbone:
        module.set_backbone_frozen(True)
        if cache_features(cfg):
            bundle = dataclasses.replace(
                bundle, train=IndexedDataset(bundle.train), val=IndexedDataset(bundle.val)
            )
            module.feature_caches = {
                "train": FeatureCache(len(bundle.train)),
                "val": FeatureCache(len(bundle.val)),
            }
            log("frozen backbone, no augmentation: backbone features are computed once and cached")
    stop = StopRequest()
    mode = "max" if t.monitor == "val_acc" else "min"
    early = EarlyStopping(
        monitor=t.monitor, mode=mode, patience=t.patience if t.early_stopping else 10**9,
        min_delta=t.min_delta, check_finite=True,
    )  # fmt: skip
    recorder = RunRecorder(run_dir, log=log)
    checkpoint = RunCheckpoint(
        run_dir, monitor=t.monitor, mode=mode, export_best=export_best,
        every_n_steps=t.checkpoint_every_n_steps, stop=stop,
    )  # fmt: skip
    callbacks = [recorder, early, checkpoint, BackboneUnfreeze(cfg.model.unfreeze_at)]
    progress = sys.stderr.isatty()
    _quiet_lightning()
    if progress:
        callbacks.append(TQDMProgressBar(leave=False))
        module._progress_bar = True
    trainer = L.Trainer(
        max_epochs=t.epochs,
        accelerator=accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy_for(cfg, accelerator),
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
        default_root_dir=str(run_dir),
        log_every_n_steps=max(1, steps_per_epoch),
    )
    start = time.perf_counter()
    stop.install()
    try:
        trainer.fit(module, datamodule=BundleDataModule(bundle, cfg), ckpt_path=resume_from)
    finally:
        stop.uninstall()
    reason = "max epochs"
    if early.stopped_epoch > 0 and t.early_stopping:
        reason = f"early stop ({t.monitor} did not improve for {t.patience} epochs)"
    return FitResult(
        stop_reason=reason,
        best_epoch=checkpoint.best_epoch,
        best_score=checkpoint.best_score,
        epochs_run=len(recorder.history),
        wall_time_s=time.perf_counter() - start,
        history=recorder.history,
    )
