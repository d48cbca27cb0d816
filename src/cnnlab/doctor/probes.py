"""Short measurements on a run's model and data (seconds on a CPU), for the rules to reason over.

On a fresh model with the run's configuration: the loss at initialisation (and with the head's
bias set to the log class prior), the activation scale through the layers and the gradient
ratio first/last layer, the update-to-weight ratio of one optimizer step at the configured peak
learning rate, and whether that optimizer fits one batch of 16 images in 40 steps.
On the saved (best) model: accuracy and per-class recall on validation images, accuracy on
training images without augmentation, BatchNorm with running vs batch statistics, dead ReLU
channels. On the data: per-channel input statistics after preprocessing, and exact pixel copies
of training images in the validation and test splits.

    inputs = load_probe_inputs(run_dir, status)
    results = run_probes(inputs)
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cnnlab.doctor.adapter import ProbeInputs, make_optimizer, training_modes
from cnnlab.doctor.evidence import ProbeResults
from cnnlab.doctor.thresholds import OVERFIT_BATCH, OVERFIT_STEPS

EVAL_IMAGES = 1000  # images per split for the saved-model probes: accuracy to about ±3%
BN_IMAGES = 512
STEP_BATCH = 64  # batch for the init loss and the one-step update ratio


def run_probes(inputs: ProbeInputs, *, seed: int | None = None) -> ProbeResults:
    """Every probe; the global RNG state is restored afterwards."""
    start = time.perf_counter()
    seed = inputs.cfg.train.seed if seed is None else seed
    r = ProbeResults()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x, y = sample_batch(inputs.train, STEP_BATCH, inputs, seed)
        r.input_stats = input_stats(x)
        fresh = inputs.fresh_model()
        counts = np.bincount(np.asarray(_targets(inputs.train)), minlength=len(inputs.classes))
        r.init_loss, r.prior_bias_loss, r.act_std, r.init_grad_ratio = init_probe(
            copy.deepcopy(fresh), inputs, x, y, counts
        ).values()
        r.update_ratio = update_ratio(copy.deepcopy(fresh), inputs, x, y)
        bx, by = x[:OVERFIT_BATCH], y[:OVERFIT_BATCH]
        r.overfit = overfit_one_batch(fresh, inputs, bx, by)
        r.duplicates = cross_split_duplicates(inputs)
        if inputs.saved is not None:
            saved_model_probes(inputs, r, seed)
    r.seconds = round(time.perf_counter() - start, 2)
    return r


# ---- data ----------------------------------------------------------------------------------


def _targets(ds: Dataset) -> list[int]:
    t = getattr(ds, "targets", None)
    return list(t) if t is not None else [int(ds[i][1]) for i in range(len(ds))]


def pick(n_total: int, n: int, seed: int) -> np.ndarray:
    """n indices spread over the dataset, in a seeded random order (batches mix classes even
    when a folder dataset is sorted by class)."""
    idx = np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(np.int64))
    return np.random.default_rng(seed).permutation(idx)


def sample_batch(
    ds: Dataset, n: int, inputs: ProbeInputs, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    idx = pick(len(ds), n, seed)
    items = [ds[int(i)] for i in idx]
    x = torch.stack([torch.as_tensor(it[0]) for it in items])
    y = torch.tensor([int(it[1]) for it in items], dtype=torch.long)
    return inputs.to_input(x).float(), y


def input_stats(x: torch.Tensor) -> dict[str, list[float]]:
    """Per-channel mean and std of a preprocessed batch (N, C, H, W)."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    return {
        "mean": [round(float(v), 4) for v in flat.mean(1)],
        "std": [round(float(v), 4) for v in flat.std(1)],
    }


def _hashes(ds: Dataset) -> list[bytes]:
    """A digest of each image's decoded uint8 pixels (what the model is fed, before crops)."""
    images = getattr(ds, "images", None)
    if images is not None:  # in-memory arrays (Fashion-MNIST)
        arrays = (images[i] for i in range(len(images)))
    elif hasattr(ds, "raw"):  # image folders: the cached decoded pixels
        arrays = (ds.raw(i) for i in range(len(ds)))
    else:
        return []
    return [
        hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=12).digest() for a in arrays
    ]


def cross_split_duplicates(inputs: ProbeInputs) -> dict[str, Any] | None:
    train = set(_hashes(inputs.train))
    if not train:
        return None
    out: dict[str, Any] = {}
    for split, ds in (("val", inputs.val), ("test", inputs.test)):
        if ds is not None and len(ds):
            h = _hashes(ds)
            out[split] = {"images": len(h), "copies_of_train": sum(d in train for d in h)}
    return out


# ---- fresh model -----------------------------------------------------------------------------


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def init_probe(
    model: nn.Module, inputs: ProbeInputs, x: torch.Tensor, y: torch.Tensor, counts: np.ndarray
) -> dict[str, Any]:
    """Initial loss, loss with the prior bias, output std per weight layer, gradient ratio."""
    training_modes(model, inputs.cfg)
    stds: dict[str, float] = {}

    def record(name: str):
        def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:  # None: output unchanged
            stds.setdefault(name, float(out.detach().float().std()))

        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in _weight_layers(model)]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    loss = F.cross_entropy(logits, y)
    trainable = [(n, m) for n, m in _weight_layers(model) if m.weight.requires_grad]
    grad_ratio = None
    if torch.isfinite(loss) and len(trainable) >= 2:
        loss.backward()
        first, last = trainable[0][1].weight.grad, trainable[-1][1].weight.grad
        if first is not None and last is not None and float(last.norm()) > 0:
            grad_ratio = float(first.norm() / last.norm())
    prior = np.maximum(counts, 1) / max(1, counts.sum())
    with torch.no_grad():
        shifted = logits.detach() + torch.log(torch.as_tensor(prior, dtype=logits.dtype))
        prior_loss = float(F.cross_entropy(shifted, y))
    return {
        "init_loss": float(loss.detach()),
        "prior_bias_loss": prior_loss,
        "act_std": stds,
        "init_grad_ratio": grad_ratio,
    }


def _is_finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def update_ratio(
    model: nn.Module, inputs: ProbeInputs, x: torch.Tensor, y: torch.Tensor
) -> dict[str, Any] | None:
    """|w_after - w_before| / |w_before| per weight tensor after one step at the peak lr."""
    training_modes(model, inputs.cfg)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2}
    if not params:
        return None
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = make_optimizer(model, inputs.cfg)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    per_layer = {}
    for n, p in params.items():
        norm = float(before[n].norm())
        step = float((p.detach() - before[n]).norm())
        per_layer[n] = step / norm if norm > 0 and math.isfinite(step) else math.inf
    values = sorted(per_layer.values())
    return {
        "lr": inputs.cfg.optim.lr,
        "optimizer": inputs.cfg.optim.optimizer,
        "median": values[len(values) // 2],
        "max": values[-1],
        "min": values[0],
        "per_layer": {k: float(f"{v:.4g}") for k, v in per_layer.items()},
    }


def overfit_one_batch(
    model: nn.Module, inputs: ProbeInputs, x: torch.Tensor, y: torch.Tensor
) -> dict[str, Any]:
    """Can the run's optimizer (constant peak lr) fit 16 images in 40 steps? Dropout off, so
    that this tests optimisation, not regularisation."""
    training_modes(model, inputs.cfg)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    opt = make_optimizer(model, inputs.cfg)
    losses = []
    for _ in range(OVERFIT_STEPS):
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            break
        if losses[-1] < 0.05 and bool((logits.argmax(1) == y).all()):
            break  # fitted; going on only grinds through denormal-sized gradients
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = model(x)
    acc = float((logits.argmax(1) == y).float().mean()) if _is_finite(logits) else 0.0
    final = float(F.cross_entropy(logits, y)) if _is_finite(logits) else math.inf
    return {
        "images": len(y),
        "steps": len(losses),
        "initial_loss": losses[0],
        "final_loss": final,
        "final_acc": acc,
        "fitted": acc >= 0.9 and math.isfinite(final),
    }


# ---- saved model ---------------------------------------------------------------------------


@torch.no_grad()
def _predict(
    model: nn.Module, ds: Dataset, idx: np.ndarray, inputs: ProbeInputs, batch: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    logits, ys = [], []
    for s in range(0, len(idx), batch):
        items = [ds[int(i)] for i in idx[s : s + batch]]
        x = inputs.to_input(torch.stack([torch.as_tensor(it[0]) for it in items])).float()
        logits.append(model(x).float())
        ys.append(torch.tensor([int(it[1]) for it in items]))
    return torch.cat(logits), torch.cat(ys)


def saved_model_probes(inputs: ProbeInputs, r: ProbeResults, seed: int) -> None:
    model = inputs.saved.eval()
    n_classes = len(inputs.classes)
    if inputs.val is not None and len(inputs.val):
        idx = pick(len(inputs.val), EVAL_IMAGES, seed)
        with DeadReluCounter(model) as dead:
            logits, y = _predict(model, inputs.val, idx, inputs)
        r.val = _accuracy_by_class(logits, y, n_classes)
        r.dead_relu = dead.result(len(idx))
        r.bn_gap = bn_gap(model, inputs, idx[:BN_IMAGES], logits[:BN_IMAGES], y[:BN_IMAGES])
    idx = pick(len(inputs.train), EVAL_IMAGES, seed)
    logits, y = _predict(model, inputs.train, idx, inputs)
    r.train_eval = _accuracy_by_class(logits, y, n_classes)


def _accuracy_by_class(logits: torch.Tensor, y: torch.Tensor, n: int) -> dict[str, Any]:
    pred = logits.argmax(1)
    support = torch.bincount(y, minlength=n)
    hits = torch.bincount(y[pred == y], minlength=n)
    recall = [float(h / s) if s > 0 else None for h, s in zip(hits, support, strict=True)]
    return {
        "images": len(y),
        "accuracy": float((pred == y).float().mean()),
        "recall": recall,
        "support": support.tolist(),
        "pred_histogram": torch.bincount(pred, minlength=n).tolist(),
    }


def _trained_bns(model: nn.Module, inputs: ProbeInputs) -> list[nn.Module]:
    """BatchNorm layers that trained in train mode (not a frozen backbone's, not --bn-eval's)."""
    m = inputs.cfg.model
    skip = set()
    if m.freeze_backbone and m.unfreeze_at is None or m.bn_eval:
        skip = {id(b) for b in model.backbone.modules()}
    return [
        b
        for b in model.modules()
        if isinstance(b, nn.modules.batchnorm._BatchNorm) and id(b) not in skip
    ]


def bn_gap(
    model: nn.Module,
    inputs: ProbeInputs,
    idx: np.ndarray,
    eval_logits: torch.Tensor,
    y: torch.Tensor,
) -> dict[str, Any] | None:
    """Accuracy with BatchNorm on batch statistics, in batches of the run's training size (as
    training normalised them), vs the running statistics inference uses. A large gap: the
    running statistics do not describe what the layers saw in training (tiny batches, too few
    steps, fine-tuned pretrained statistics)."""
    probe = copy.deepcopy(model).eval()
    bns = _trained_bns(probe, inputs)
    if not bns:
        return None
    for b in bns:
        b.train()  # batch statistics; the running stats this overwrites belong to the copy
    batch = max(2, min(128, inputs.cfg.data.batch_size))  # BatchNorm needs 2 values per channel
    idx = idx[: len(idx) - len(idx) % batch] if len(idx) >= batch else idx
    logits, yb = _predict(probe, inputs.val, idx, inputs, batch=batch)
    eval_acc = float((eval_logits[: len(idx)].argmax(1) == y[: len(idx)]).float().mean())
    batch_acc = float((logits.argmax(1) == yb).float().mean())
    return {
        "layers": len(bns),
        "eval_acc": eval_acc,
        "batch_stats_acc": batch_acc,
        "gap": batch_acc - eval_acc,
        "images": len(idx),
        "batch": batch,
    }


class DeadReluCounter:
    """Forward hooks on every ReLU/ReLU6: which channels are positive for some image and
    position. Reduced inside the hook, as an in-place op downstream may overwrite the output."""

    def __init__(self, model: nn.Module) -> None:
        self.relus = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU | nn.ReLU6)]
        self.calls: dict[str, list[torch.Tensor]] = {}
        self.batches = 0
        self._hooks: list[Any] = []

    def _hook(self, name: str):
        def fn(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
            dims = [0, 2, 3] if out.ndim == 4 else [0]
            self.calls.setdefault(name, []).append(out.detach().float().amax(dim=dims) > 0)

        return fn

    def __enter__(self) -> DeadReluCounter:
        self._hooks = [m.register_forward_hook(self._hook(n)) for n, m in self.relus]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._hooks:
            h.remove()

    def result(self, images: int, batch: int = 128) -> dict[str, Any] | None:
        if not self.calls:
            return None
        batches = -(-images // batch)
        per_layer, dead, total = {}, 0, 0
        for name, calls in self.calls.items():
            k = max(1, len(calls) // batches)  # a module applied k times per forward (ResNets)
            for j in range(k):
                alive = torch.stack(calls[j::k]).any(0)
                key = name if k == 1 else f"{name}#{j}"
                per_layer[key] = round(1.0 - float(alive.float().mean()), 4)
                dead += int((~alive).sum())
                total += alive.numel()
        return {"per_layer": per_layer, "overall": dead / max(1, total), "images": images}
