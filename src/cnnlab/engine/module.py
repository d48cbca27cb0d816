"""The LightningModule: receives its model (it never builds one), computes loss and accuracy,
builds the optimizer and the schedule from the config, and refuses non-finite losses.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import OptimConfig
from cnnlab.engine.epoch_metrics import EpochMean, correct, from_torchmetrics
from cnnlab.engine.feature_cache import FeatureCache, fill_caches
from cnnlab.engine.schedules import lr_factor
from cnnlab.engine.seeding import seed_step
from cnnlab.errors import DivergedError
from cnnlab.models.base import CnnClassifier
from cnnlab.models.fold import FoldError, LiveInferenceCopy, NonFiniteOutputs, memory_format

# images per inference batch of the frozen backbone's one pass on a CPU (FeatureCache.fill;
# on an accelerator the run's batch size, which is known to fit in its memory)
FILL_BATCH = 64


class ClassifierModule(L.LightningModule):
    def __init__(
        self,
        model: CnnClassifier,
        optim: OptimConfig,
        *,
        epochs: int,
        steps_per_epoch: int,
        seed: int,
        class_weights: list[float] | None = None,
        channels_last: bool = False,
        batch_transform: nn.Module | None = None,
        bn_eval: bool = False,
        monitor: str = "val_acc",
        freeze_backbone: bool = False,
        feature_caches: dict[str, FeatureCache] | None = None,
        progress_bar: bool = False,
    ) -> None:
        super().__init__()
        self.bn_eval = bn_eval
        self.monitor = monitor
        self.model = model
        self.optim = optim
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.channels_last = channels_last
        self.input_transform = batch_transform if batch_transform is not None else nn.Identity()
        if channels_last:  # weights and inputs in one memory format, or convs take a slow path
            self.model.to(memory_format=torch.channels_last)
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)
        n = model.num_classes
        # micro accuracy and batch-weighted losses as sums (engine/epoch_metrics.py)
        self.train_acc, self.val_acc = EpochMean(), EpochMean()
        self.train_loss, self.val_loss = EpochMean(), EpochMean()
        # part of the checkpoint, so a mid-epoch resume continues the epoch's running averages
        self.train_acc.persistent(True)
        self.train_loss.persistent(True)
        # predicted-class histogram of the last validation: "predicts one class" shows here
        self._pred_hist = torch.zeros(n, dtype=torch.long)
        self.progress_bar = progress_bar  # the batch's loss and accuracy go to the bar
        # frozen backbone + fixed inputs: features computed once per sample (see cache_features)
        self.feature_caches = feature_caches or {}
        self._backbone_frozen = False
        # validation's folded + fused copy of the model (`_validation_model`): None until the
        # first validation decides; False where the live model validates
        self._val_copy: LiveInferenceCopy | bool | None = None
        # Lightning restores each submodule's own mode after validation instead of calling
        # train() again, so the BatchNorm modes must be right from the start
        self.set_backbone_frozen(freeze_backbone)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, *rest = batch
        if not x.numel():  # NO_IMAGE: the backbone features of this batch are cached
            return batch
        return (self.input_transform(x), *rest)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self._backbone(x))

    def _backbone(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model.forward_features(x)

    def _logits(self, batch: tuple, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels; (x, y, index) batches use the frozen-backbone feature cache."""
        if len(batch) == 3 and self.feature_caches and self._backbone_frozen:
            x, y, idx = batch
            features = self.feature_caches[split].lookup(x, idx, self._backbone, y)
            return self.model.forward_head(features), y
        return self(batch[0]), batch[1]

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits, y, weight=self.class_weight, label_smoothing=self.optim.label_smoothing
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # called before the state dict is loaded: a checkpoint from a cnnlab that kept its
        # running averages in torchmetrics' Accuracy / MeanMetric resumes mid-epoch too
        for prefix in ("train_acc", "train_loss"):
            from_torchmetrics(checkpoint["state_dict"], prefix)

    def on_train_start(self) -> None:
        # A restored optimizer carries the learning rates of the last step it took; the schedule
        # (a pure function of the step, re-planned over a new total when --epochs grows) says
        # what the next step uses. Same expression as LambdaLR's, so an uninterrupted and a
        # resumed run stay bitwise equal.
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                groups = sched.optimizer.param_groups
                for group, base, fn in zip(groups, sched.base_lrs, sched.lr_lambdas, strict=True):
                    group["lr"] = base * fn(sched.last_epoch)

    def on_train_epoch_start(self) -> None:
        # One process: the frozen backbone's single pass over train and val runs up front in
        # one stream of inference batches (on a CPU larger than a training batch, and of one
        # shape across the splits' boundary: benchmarks/RESULTS.md),
        # inside epoch 1's time (Lightning calls the callbacks' hook, which starts the epoch
        # clock, first), in the run's precision and with its loader workers. Once a split's
        # features (and labels) are all cached, its loaders decode no image. Under DDP each
        # process fills its own shard lazily instead.
        if not (self.feature_caches and self._backbone_frozen) or self.trainer.world_size > 1:
            return
        data = self.trainer.datamodule
        batch = FILL_BATCH if self.device.type == "cpu" else data.cfg.data.batch_size
        datasets = {split: getattr(data.bundle, split) for split in self.feature_caches}
        with self.trainer.precision_plugin.forward_context():
            fill_caches(
                [(cache, datasets[split]) for split, cache in self.feature_caches.items()],
                batch_size=batch, transform=self.input_transform, device=self.device,
                num_workers=data.cfg.data.workers,
            )  # fmt: skip
        for split, cache in self.feature_caches.items():
            labels = cache.cached_labels()
            if labels is not None:
                datasets[split].features_cached(labels)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # dropout and any other global-RNG use become a function of (seed, step, rank)
        seed_step(self.seed, self.global_step, self.global_rank, self.device)

    def training_step(self, batch: tuple, batch_idx: int) -> Any:
        logits, y = self._logits(batch, "train")
        loss = self._loss(logits, y)
        finite = bool(torch.isfinite(loss))
        if self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            # Raised before backward: the weights and the last checkpoint stay un-poisoned.
            raise DivergedError(
                f"loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                f"likely causes: learning rate too high (lr={self.optim.lr}), fp16 overflow, or "
                f"bad input values; lower --lr or use --precision 32"
            )
        self.train_loss.update(loss.detach() * len(y), len(y))
        self.train_acc.update(correct(logits.detach(), y), len(y))
        if self.progress_bar:
            acc = correct(logits.detach(), y) / len(y)
            self.log_dict(
                {"loss": loss.detach(), "acc": acc}, prog_bar=True, on_step=True, on_epoch=False
            )
        return loss

    @property
    def backbone_frozen(self) -> bool:
        return self._backbone_frozen

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Frozen: no gradients for the backbone and its BatchNorm statistics fixed (eval mode)."""
        if self._backbone_frozen and not frozen:
            self.feature_caches = {}  # features change once the backbone trains
            self._val_copy = None  # validation ran on cached features: decide again
            data = getattr(self._trainer, "datamodule", None) if self._trainer else None
            for split in ("train", "val"):  # and its loaders must decode images again
                dataset = getattr(getattr(data, "bundle", None), split, None)
                if hasattr(dataset, "decode_images"):
                    dataset.decode_images()
        self._backbone_frozen = frozen
        for p in self.model.backbone.parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> ClassifierModule:
        super().train(mode)
        if getattr(self, "_backbone_frozen", False):
            self.model.backbone.eval()
        elif getattr(self, "bn_eval", False):
            for m in self.model.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        fast = self._validation_model(batch)
        if fast is None:
            logits, y = self._logits(batch, "val")
        else:
            x, y = batch[0], batch[1]
            logits = fast(x.contiguous(memory_format=memory_format(self.channels_last)))
        # plain cross-entropy, as `cnnlab evaluate` reports it: label smoothing and class
        # weights shape the training objective, not the measure of the model
        self.val_loss.update(F.cross_entropy(logits, y) * len(y), len(y))
        self.val_acc.update(correct(logits, y), len(y))
        self._pred_hist += torch.bincount(logits.argmax(1).cpu(), minlength=len(self._pred_hist))

    def _validation_model(self, batch: tuple) -> nn.Module | None:
        """On a CPU, validation runs through an inference copy of the model with BatchNorm
        folded into the convolutions and each conv + activation fused (models/fold.py), as
        `cnnlab evaluate` does. Time per batch against the model's own eval forward, 2 AMD
        EPYC vCPUs (benchmarks/bench_validation.py): EfficientNet-Lite0 0.74, MobileNetV3
        0.77, smallcnn 0.86, ResNet-50 0.91. Built once at the first validation and refreshed
        in place before each later one (`on_validation_epoch_start`). Not where nothing folds
        (VGG, AlexNet: a copy of all weights for the fusion alone), nor for cached features
        (the head alone runs) or off a CPU. None: the live model validates."""
        if self._val_copy is None:
            self._val_copy = self._build_validation_copy(batch)
        return self._val_copy.module if self._val_copy else None

    def _build_validation_copy(self, batch: tuple) -> LiveInferenceCopy | bool:
        x = batch[0]
        cached = len(batch) == 3 and bool(self.feature_caches) and self._backbone_frozen
        if cached or self.device.type != "cpu" or not x.numel():
            return False
        try:
            fmt = memory_format(self.channels_last)
            live = LiveInferenceCopy.build(self.model, x[:1], memory_format=fmt)
        except NonFiniteOutputs:  # diverging: the live model, whose NaN loss stops the run
            return False
        except FoldError as e:  # never a wrong validation: the live model, and said
            warnings.warn(f"{e}; validating with the unfolded model", stacklevel=2)
            return False
        return live if live.folds else False

    def on_validation_epoch_start(self) -> None:
        self._pred_hist.zero_()
        if isinstance(self._val_copy, LiveInferenceCopy):
            self._val_copy.refresh()  # the weights the epoch's training steps left

    def on_validation_epoch_end(self) -> None:
        if self.trainer.world_size > 1:  # every rank saw its own shard of the validation set
            self._pred_hist = self.all_gather(self._pred_hist.to(self.device)).sum(0).cpu()
        if self.train_loss.update_count:  # validation ends each training epoch: log both
            self.log("train_loss", self.train_loss.compute())
            self.log("train_acc", self.train_acc.compute())
            self.train_loss.reset()
            self.train_acc.reset()
        # torchmetrics reduces its states across ranks in compute(); logging the computed value
        # with sync_dist=False avoids a second (mean-of-means) reduction.
        val_loss = self.val_loss.compute()
        if not torch.isfinite(val_loss):
            # a finite training loss can hide weights that overflow on other inputs
            raise DivergedError(
                f"validation loss became {val_loss.item()} after epoch {self.current_epoch + 1} "
                f"(step {self.global_step}); likely causes: learning rate too high "
                f"(lr={self.optim.lr}) or fp16 overflow; lower --lr or use --precision 32"
            )
        self.log("val_loss", val_loss, prog_bar=True)
        self.log("val_acc", self.val_acc.compute(), prog_bar=True)
        self.val_loss.reset()
        self.val_acc.reset()

    def on_train_end(self) -> None:
        self._val_copy = None  # the copy's memory goes with the fit; a new fit decides again

    def configure_optimizers(self) -> Any:
        o = self.optim
        trainer = self._trainer  # None when the lr finder asks outside a fit
        scaled = trainer is not None and str(trainer.precision).startswith("16")
        opt = make_optimizer(param_groups(self.model, o), o, grad_scaler=scaled)
        if o.schedule == "plateau":
            # the same metric and direction as early stopping and the best checkpoint
            mode = "max" if self.monitor == "val_acc" else "min"
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=mode, factor=o.plateau_factor, patience=o.plateau_patience
            )
            return {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "monitor": self.monitor, "interval": "epoch"},
            }

        def factor(step: int) -> float:
            return lr_factor(
                o.schedule,
                step,
                steps_per_epoch=self.steps_per_epoch,
                epochs=self.epochs,
                warmup_epochs=o.warmup_epochs,
                step_size=o.step_size,
                gamma=o.gamma,
            )

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        if self.optim.grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm"
            )

    def pred_histogram(self) -> list[int]:
        return self._pred_hist.tolist()


def make_optimizer(
    groups: list[dict[str, Any]], o: OptimConfig, *, grad_scaler: bool = False
) -> torch.optim.Optimizer:
    """The configured optimizer over `groups`, with PyTorch's fused kernels where every
    parameter allows them: one pass over each tensor per step instead of one per operation.
    Not under a GradScaler (`grad_scaler`, fp16 mixed precision): a fused step unscales the
    gradients itself, so Lightning would show the gradient-norm signals scaled gradients and
    refuses gradient clipping.
    On 2 AMD EPYC vCPUs, side by side in one run, a fused step was 2.9x faster than the default
    per-tensor loop for ResNet-18's SGD, 3.2x for VGG16's (64 px), AdamW 2.8-3.7x
    (benchmarks/bench_optimizer.py, RESULTS.md "Fused optimizer steps"); the same math, rounded
    in another order at most (within 3e-8 of the loop's weights after three steps)."""
    extra = {"fused": True} if not grad_scaler and _fusable(groups) else {}
    if o.optimizer == "sgd":
        nesterov = o.nesterov and o.momentum > 0
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=nesterov, **extra)
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, lr=o.lr, **extra)
    return torch.optim.AdamW(groups, lr=o.lr, **extra)


def _fusable(groups: list[dict[str, Any]]) -> bool:
    """Every parameter a floating-point tensor on a device with fused optimizer kernels."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
    except ImportError:  # a torch without the list: the default per-tensor loop
        return False
    devices = _get_fused_kernels_supported_devices()
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(
        p.device.type in devices and torch.is_floating_point(p) for p in params
    )


def param_groups(model: CnnClassifier, o: OptimConfig) -> list[dict[str, Any]]:
    """Backbone and head as separate groups (own lr), each split into decayed weights and
    un-decayed norms/biases (weight decay on BatchNorm scales only fights normalisation)."""
    groups = []
    for part, lr in (
        ("backbone", o.backbone_lr if o.backbone_lr is not None else o.lr),
        ("head", o.lr),
    ):
        decay, no_decay = [], []
        for p in getattr(model, part).parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)
        groups.append({"params": decay, "lr": lr, "weight_decay": o.weight_decay, "name": part})
        groups.append(
            {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{part}_no_decay"}
        )
    return [g for g in groups if g["params"]]
