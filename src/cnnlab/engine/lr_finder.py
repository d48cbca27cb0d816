"""Learning-rate finder: an exponential sweep that leaves no trace, and a suggestion only when
three independent rules agree.

    result = lr_find(module, train_loader)            # the run's optimizer, transform, freezing
    result.suggestion          # a float, or None with result.reason ("no clear valley: ...")
    write_lr_find(result, run_dir)                    # lr_find.json + lr_find.png

The sweep (Smith 2015, "Cyclical Learning Rates", section 3.3) trains one mini-batch per step
while the learning rate grows geometrically from `start_lr` to `end_lr`, and stops once the
running (bias-corrected EMA) loss exceeds `diverge_factor` times its best. Three rules read the
same EMA run forward and backward, which removes its lag:

- valley: the stretch from where the loss leaves its plateau to its minimum; its middle;
- steepest: the steepest descent of the loss against log10(lr), before the minimum;
- minimum/10: the lr at the lowest loss, divided by 10 (the classic rule of thumb).

They "agree" when each of the three is within `agree_factor` (3x) of their geometric mean,
the agreed rate: the suggestion is then never more than 3x from what any one rule says. (Until
2026-11-30 the bar was 3x between the largest and the smallest; on Fashion-MNIST the steepest
descent sits 2.5-4x above the other two and that bar refused every sweep whose mean was
1.1-1.4x from the best rate of a grid: benchmarks/RESULTS.md.) The agreed rate is one to
hold for long: the suggestion for the schedules that do (none; plateau and step until they
drop). With SGD, schedules that start from a peak and anneal (one-cycle, cosine) hold it only
briefly, and their peak is the range test's upper bound, about where the loss stops falling
(Smith 2015, section 3.3, and Smith 2018, "A disciplined approach to neural network
hyper-parameters", section 4.1, both with SGD): a decade above the agreed rate, as minimum/10
is a decade below it. Adam and AdamW normalise each parameter's step by its gradient's running
scale; fastai, whose default optimizer is Adam, gives the valley itself as one-cycle's peak
(`learn.fit_one_cycle(n, lr_find().valley)`): with Adam the agreed rate is the suggestion for
every schedule. This rule was fixed before the bench's held-out tasks ran: it held for a frozen
head with SGD and missed by 8x (too low) for AdamW training a network from scratch, where the
grid's best is a decade higher (benchmarks/RESULTS.md, "Learning-rate finder"). Anything else
is reported as "no clear valley", never as a guess.

When the sweep has more steps than the training set has mini-batches, it would see every
image several times and the training loss would measure memorisation (a head on 245 photos
keeps its loss near 0 up to lr 0.3): the caller then gives `held_out`, a fixed batch of
validation images, and the rules read the loss on it after each step (the same batch every
step, in the training mode the training loss uses, with the same dropout mask each time; a
frozen backbone's features are computed once).

Afterwards the model's parameters and buffers (BatchNorm running statistics and
`num_batches_tracked`), its gradients and train/eval modes, a given optimizer's state and the
torch/numpy/python RNG states are restored bit-exactly: the finders users complain about
changed what training did next (Lightning #6675, fastai #3013 and #3185, torch-lr-finder #11).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.engine.module import ClassifierModule
from cnnlab.engine.seeding import derive_seed, seed_generators
from cnnlab.errors import ConfigError, DataError
from cnnlab.fsio import write_json, write_with

# The EMA's first values average only a handful of batches, too noisy to read a slope from:
# the rules skip the first tenth of the curve, and at least this many points (as fastai does).
WARMUP_POINTS = 5
MIN_POINTS = 20  # fewer recorded steps cannot show a plateau, a descent and a minimum
# A curve whose smoothed loss never falls by this fraction has no valley to read.
MIN_RELATIVE_DROP = 0.1
# with SGD an annealed schedule's peak sits where the loss stops falling: a decade above the
# agreed rate (with Adam the agreed rate is the peak: module docstring)
PEAK_FACTOR = 10.0
ANNEALED = ("onecycle", "cosine")
PEAK_OPTIMIZERS = ("sgd",)


class StopReason(str, Enum):
    DIVERGED = "diverged"  # smoothed loss above diverge_factor x its best
    NON_FINITE = "non_finite"  # a NaN/Inf loss: that point is not recorded
    END = "end"  # reached end_lr


class LRFindStatus(str, Enum):
    SUGGESTED = "suggested"
    RULES_DISAGREE = "rules_disagree"
    NO_DESCENT = "no_descent"
    STILL_FALLING = "still_falling"
    TOO_SHORT = "too_short"


@dataclass(frozen=True)
class LRFindSettings:
    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_steps: int = 100  # mini-batches; 12.5 per decade over the default range
    # EMA of the loss. It lags by beta/(1-beta) steps: fastai's 0.98 lags 49 steps, four
    # decades of a 100-step sweep; 0.8 lags 4 steps (0.3 decade) and still damps single spikes
    beta: float = 0.8
    diverge_factor: float = 4.0  # stop once the smoothed loss is 4x its best (fastai's rule)
    agree_factor: float = 3.0  # the rules agree when each is within 3x of their geometric mean

    def check(self) -> None:
        if not 0 < self.start_lr < self.end_lr:
            raise ConfigError(
                f"lr-find needs 0 < start lr < end lr, got {self.start_lr} and {self.end_lr}"
            )
        if self.num_steps < MIN_POINTS:
            raise ConfigError(f"lr-find needs at least {MIN_POINTS} steps, got {self.num_steps}")
        if not 0 <= self.beta < 1:
            raise ConfigError(f"lr-find smoothing beta must be in [0, 1), got {self.beta}")
        if self.diverge_factor <= 1 or self.agree_factor < 1:
            raise ConfigError("lr-find needs diverge factor > 1 and agree factor >= 1")


@dataclass(frozen=True)
class RuleValues:
    valley: float | None
    steepest: float | None
    min_div10: float | None

    def values(self) -> list[float | None]:
        return [self.valley, self.steepest, self.min_div10]


@dataclass(frozen=True)
class Suggestion:
    lr: float | None
    status: LRFindStatus
    reason: str
    rules: RuleValues


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # the losses the rules read: held-out ones when held_out > 0
    smoothed: list[float]  # zero-lag (forward-backward) bias-corrected EMA: what the rules read
    suggestion: float | None  # optim.lr for `schedule`
    agreed: float | None  # the rules' geometric mean: a rate to hold (schedule "none")
    schedule: str
    status: LRFindStatus
    reason: str
    rules: RuleValues
    stop: StopReason
    settings: LRFindSettings = field(default_factory=LRFindSettings)
    optimizer: str = ""
    held_out: int = 0  # held-out images the losses were measured on; 0: the training batches
    loss_source: str = ""  # why the held-out images, said by the caller that chose them
    training_losses: list[float] = field(default_factory=list)  # each step's mini-batch loss

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"], d["stop"] = self.status.value, self.stop.value
        return d


# ---------------------------------------------------------------------------------------------
# pure arithmetic


def sweep_lrs(start: float, end: float, n: int) -> np.ndarray:
    """n learning rates, geometrically spaced from start to end inclusive."""
    return start * (end / start) ** (np.arange(n) / (n - 1))


def smooth(losses: Iterable[float], beta: float) -> np.ndarray:
    """Exponential moving average with Adam's bias correction, so that early values are the
    mean of the batches seen so far rather than pulled towards zero. This is the running value
    the sweep stops on; it lags the losses by about beta / (1 - beta) steps."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return np.asarray(out, dtype=np.float64)


def smooth_zero_lag(losses: Iterable[float], beta: float) -> np.ndarray:
    """The same EMA run forward, then backward over its output: the two lags cancel, so the
    curve's features stay at the lr that caused them (the rules read positions off it)."""
    forward = smooth(losses, beta)
    return smooth(forward[::-1], beta)[::-1].copy()


def warmup(n: int) -> int:
    """Points at the start of an n-point curve that the rules ignore."""
    return max(WARMUP_POINTS, n // 10)


def valley_index(smoothed: np.ndarray) -> int | None:
    """Middle of the valley: the stretch from where the loss leaves its plateau (the last point
    before the minimum still within 10% of the total fall from the starting level) to the
    minimum. The middle index is the geometric middle of that lr range.

    (fastai's valley, the longest decreasing subsequence, runs back into a long noisy plateau
    on real curves and lands decades early; a band anchored on the fall itself does not.)
    """
    skip = warmup(len(smoothed))
    y = smoothed[skip:]
    low = int(np.argmin(y))
    fall = y[0] - y[low]
    if low < 2 or fall <= 0:
        return None
    on_plateau = np.flatnonzero(y[:low] >= y[0] - 0.1 * fall)
    leave = int(on_plateau[-1]) + 1
    return skip + (leave + low) // 2


def steepest_index(lrs: np.ndarray, smoothed: np.ndarray) -> int | None:
    """Most negative d(loss)/d(log10 lr) between the warm-up and the minimum."""
    lo = warmup(len(smoothed))
    hi = lo + int(np.argmin(smoothed[lo:]))
    if hi - lo < 2:
        return None
    slope = np.gradient(smoothed[lo : hi + 1], np.log10(lrs[lo : hi + 1]))
    i = int(np.argmin(slope))
    return lo + i if slope[i] < 0 else None


def rule_values(lrs: Iterable[float], smoothed: Iterable[float]) -> RuleValues:
    lrs, smoothed = np.asarray(list(lrs), float), np.asarray(list(smoothed), float)
    skip = warmup(len(lrs))
    if len(lrs) <= skip + 2:
        return RuleValues(None, None, None)
    v, s = valley_index(smoothed), steepest_index(lrs, smoothed)
    m = skip + int(np.argmin(smoothed[skip:]))
    return RuleValues(
        valley=None if v is None else float(lrs[v]),
        steepest=None if s is None else float(lrs[s]),
        min_div10=float(lrs[m]) / 10,
    )


def suggest(
    lrs: Iterable[float],
    smoothed: Iterable[float],
    *,
    stop: StopReason = StopReason.DIVERGED,
    agree_factor: float = 3.0,
) -> Suggestion:
    """A learning rate where the three rules agree, or None and why not."""
    lrs, smoothed = np.asarray(list(lrs), float), np.asarray(list(smoothed), float)
    rules = rule_values(lrs, smoothed)
    if len(lrs) < MIN_POINTS:
        why = f"only {len(lrs)} points before the loss {_stopped(stop)}; start lower or use more steps"
        return Suggestion(None, LRFindStatus.TOO_SHORT, f"no clear valley: {why}", rules)
    skip = warmup(len(lrs))
    first, low = float(smoothed[skip]), float(smoothed[skip:].min())
    if first - low < MIN_RELATIVE_DROP * abs(first):
        why = (
            f"the smoothed loss fell only from {first:.4g} to {low:.4g} "
            f"(less than {MIN_RELATIVE_DROP:.0%}); check the data and the model"
        )
        return Suggestion(None, LRFindStatus.NO_DESCENT, f"no clear valley: {why}", rules)
    if stop == StopReason.END and int(np.argmin(smoothed)) >= len(smoothed) - 3:
        why = f"the loss was still falling at the largest lr tried ({lrs[-1]:.3g}); raise end lr"
        return Suggestion(None, LRFindStatus.STILL_FALLING, f"no clear valley: {why}", rules)
    values = rules.values()
    if any(v is None for v in values):
        names = ", ".join(n for n, v in zip(("valley", "steepest"), values, strict=False) if not v)
        why = f"no {names} on this curve"
        return Suggestion(None, LRFindStatus.RULES_DISAGREE, f"no clear valley: {why}", rules)
    lr, spread = agreement(values)
    if spread > agree_factor:
        why = (
            f"a rule is {spread:.1f}x from their geometric mean {lr:.3g} (> {agree_factor:g}x): "
            f"valley {rules.valley:.3g}, steepest {rules.steepest:.3g}, minimum/10 "
            f"{rules.min_div10:.3g}"
        )
        return Suggestion(None, LRFindStatus.RULES_DISAGREE, f"no clear valley: {why}", rules)
    why = f"valley, steepest and minimum/10 within {spread:.1f}x of their geometric mean {lr:.3g}"
    return Suggestion(lr, LRFindStatus.SUGGESTED, why, rules)


def agreement(values: Iterable[float]) -> tuple[float, float]:
    """The geometric mean of positive rates and the largest factor between it and any of them."""
    values = list(values)
    mean = float(math.exp(sum(math.log(v) for v in values) / len(values)))
    return mean, max(max(values) / mean, mean / min(values))


def schedule_lr(agreed: float, schedule: str, optimizer: str = "sgd") -> float:
    """The `optim.lr` to use with `schedule` and `optimizer` (sgd, adam, adamw: the optimizer
    class's name in lower case), given the rules' agreed steady rate."""
    peaked = schedule in ANNEALED and optimizer in PEAK_OPTIMIZERS
    return agreed * PEAK_FACTOR if peaked else agreed


def _stopped(stop: StopReason) -> str:
    return {
        StopReason.DIVERGED: "diverged",
        StopReason.NON_FINITE: "became NaN/Inf",
        StopReason.END: "sweep ended",
    }[stop]


# ---------------------------------------------------------------------------------------------
# exact restoration


class _Snapshot:
    """Everything a sweep changes, copied so that `restore` puts back the same bits."""

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        # parameters and every buffer, persistent or not, restored in place: any optimizer or
        # hook holding these tensors keeps working
        tensors = {id(t): t for t in (*module.parameters(), *module.buffers())}
        tensors.update((id(t), t) for t in module.state_dict(keep_vars=True).values())
        self.tensors = [(t, t.detach().clone()) for t in tensors.values()]
        self.grads = [
            (p, None if p.grad is None else p.grad.detach().clone()) for p in module.parameters()
        ]
        self.requires_grad = [(p, p.requires_grad) for p in module.parameters()]
        self.modes = [(m, m.training) for m in module.modules()]
        self.optimizer = optimizer
        self.opt_state = None if optimizer is None else copy.deepcopy(optimizer.state_dict())
        self.opt_called = None if optimizer is None else getattr(optimizer, "_opt_called", None)
        self.rng = (
            torch.get_rng_state(),
            np.random.get_state(),
            random.getstate(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
            # the sweep's torch.manual_seed reseeds the MPS generator too
            torch.mps.get_rng_state() if torch.backends.mps.is_available() else None,
        )

    def restore(self) -> None:
        with torch.no_grad():
            for t, saved in self.tensors:
                t.copy_(saved)
        for p, g in self.grads:
            p.grad = g
        for p, flag in self.requires_grad:
            p.requires_grad_(flag)
        for m, mode in self.modes:
            m.training = mode  # not .train(): that would recurse and re-apply module rules
        if self.optimizer is not None:
            # load_state_dict keeps same-dtype, same-device tensors as given: our clones
            self.optimizer.load_state_dict(self.opt_state)
            if self.opt_called is not None:  # the LR scheduler's "step before optimizer" flag
                self.optimizer._opt_called = self.opt_called
        cpu, np_state, py_state, cuda, mps = self.rng
        torch.set_rng_state(cpu)
        np.random.set_state(np_state)
        random.setstate(py_state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        if mps is not None:
            torch.mps.set_rng_state(mps)


# ---------------------------------------------------------------------------------------------
# the sweep


def lr_find(
    module: ClassifierModule,
    loader: Iterable,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    settings: LRFindSettings | None = None,
    seed: int = 0,
    held_out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> LRFindResult:
    """Sweep the learning rate over `settings.num_steps` mini-batches of `loader` (cycled when
    shorter) and suggest one; the module, `optimizer` and RNG end exactly as they started.
    With `held_out` (images as the loader gives them, and their labels) the rules read the
    loss on those images after each step instead of the training batches' (module docstring).

    Without `optimizer`, the run's own is built by `module.configure_optimizers()` (type,
    momentum, weight decay groups, backbone lr). Every parameter group's lr is swept in
    proportion to its configured one, so the suggestion is for `optim.lr` and a separate
    `backbone_lr` keeps its ratio. The batch transform, channels_last, frozen backbone,
    BatchNorm modes, class weights, label smoothing and gradient clipping are the run's.
    The sweep runs in float32 whatever the run's precision.
    """
    settings = settings or LRFindSettings()
    settings.check()
    snapshot = _Snapshot(module, optimizer)
    try:
        opt = optimizer or _run_optimizer(module)
        curve = _sweep(module, loader, opt, settings, seed, held_out)
    finally:
        snapshot.restore()
    losses = curve.held_out_losses if held_out is not None else curve.training_losses
    smoothed = smooth_zero_lag(losses, settings.beta)
    s = suggest(curve.lrs, smoothed, stop=curve.stop, agree_factor=settings.agree_factor)
    schedule, name = module.optim.schedule, type(opt).__name__
    lr = None if s.lr is None else schedule_lr(s.lr, schedule, name.lower())
    reason = s.reason
    if lr is not None and lr != s.lr:
        reason += f"; {schedule} peak a decade above: {lr:.3g}"
    return LRFindResult(
        lrs=curve.lrs, losses=losses, smoothed=smoothed.tolist(), suggestion=lr, agreed=s.lr,
        schedule=schedule, status=s.status, reason=reason, rules=s.rules, stop=curve.stop,
        settings=settings, optimizer=name, held_out=0 if held_out is None else len(held_out[1]),
        training_losses=curve.training_losses,
    )  # fmt: skip


def _run_optimizer(module: ClassifierModule) -> torch.optim.Optimizer:
    conf = module.configure_optimizers()
    return conf["optimizer"] if isinstance(conf, dict) else conf


def _group_scales(opt: torch.optim.Optimizer) -> list[float]:
    """Each group's lr relative to the head's (a schedule scales all groups alike, so the ratio
    holds whether or not a scheduler has touched them)."""
    lrs = [g["lr"] for g in opt.param_groups]
    ref = next((g["lr"] for g in opt.param_groups if g.get("name") == "head"), lrs[0])
    return [lr / ref if ref > 0 else 1.0 for lr in lrs]


def _cycle(loader: Iterable) -> Iterator:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise DataError("lr-find: the training loader yields no batches; check the data")


@dataclass
class _Curve:
    lrs: list[float] = field(default_factory=list)
    training_losses: list[float] = field(default_factory=list)
    held_out_losses: list[float] = field(default_factory=list)
    stop: StopReason = StopReason.END


class _HeldOutLoss:
    """The loss on one fixed batch of held-out images, as the model stands: computed like the
    training loss (training mode, the run's loss) but without gradients, with one dropout mask
    for every call, and on features computed once when the backbone is frozen."""

    def __init__(
        self, module: ClassifierModule, batch: tuple[torch.Tensor, torch.Tensor], seed: int
    ) -> None:
        self.module, self.seed = module, derive_seed(seed, 0x4E1D)
        self.device = next(module.parameters()).device
        x, self.y = module.input_transform(batch[0].to(self.device)), batch[1].to(self.device)
        self.x, self.features = x, None
        if module.backbone_frozen:  # eval mode and no gradients: the features never change
            with torch.no_grad():
                self.x, self.features = None, module._backbone(x)

    def __call__(self) -> float:
        m = self.module
        with torch.no_grad(), _seeded(self.device, self.seed):
            frozen = self.features is not None
            logits = m.model.forward_head(self.features) if frozen else m(self.x)
            return float(m._loss(logits, self.y))


@contextlib.contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """The CPU generator and `device`'s own seeded with `seed` inside, as they were after."""
    accelerator = device.type in ("cuda", "mps")
    with torch.random.fork_rng(
        devices=[device] if accelerator else [], device_type=device.type if accelerator else None
    ):
        seed_generators(seed, device)
        yield


def _sweep(
    module: ClassifierModule,
    loader: Iterable,
    opt: torch.optim.Optimizer,
    s: LRFindSettings,
    seed: int,
    held_out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> _Curve:
    device = next(module.parameters()).device
    scales = _group_scales(opt)
    params = [p for g in opt.param_groups for p in g["params"]]
    clip = module.optim.grad_clip
    # dropout draws from the global RNG: make the sweep a function of the seed (restored after)
    torch.manual_seed(derive_seed(seed, 0x1F1D))
    module.train()  # the module's own rules: frozen backbone and bn_eval stay in eval mode
    held_out_loss = None if held_out is None else _HeldOutLoss(module, held_out, seed)
    batches = _cycle(loader)
    curve, avg, best = _Curve(), 0.0, math.inf
    for i, lr in enumerate(sweep_lrs(s.start_lr, s.end_lr, s.num_steps).tolist()):
        x, y = next(batches)[:2]  # (x, y) or (x, y, index) batches
        x, y = module.input_transform(x.to(device)), y.to(device)
        for group, scale in zip(opt.param_groups, scales, strict=True):
            group["lr"] = lr * scale
        opt.zero_grad(set_to_none=True)
        loss = module._loss(module(x), y)
        if not torch.isfinite(loss):
            curve.stop = StopReason.NON_FINITE
            return curve
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        value = float(loss.detach())
        curve.training_losses.append(value)
        if held_out_loss is not None:
            value = held_out_loss()  # after the step: the effect of this lr
            if not math.isfinite(value):
                curve.training_losses.pop()
                curve.stop = StopReason.NON_FINITE
                return curve
            curve.held_out_losses.append(value)
        curve.lrs.append(lr)
        avg = s.beta * avg + (1 - s.beta) * value
        smoothed = avg / (1 - s.beta ** (i + 1))
        best = min(best, smoothed)
        if smoothed > s.diverge_factor * best:
            curve.stop = StopReason.DIVERGED
            return curve
    return curve


# ---------------------------------------------------------------------------------------------
# artefacts


def write_lr_find(
    result: LRFindResult, folder: Path, title: str = "", extra: dict[str, Any] | None = None
) -> None:
    """lr_find.json (the result, plus `extra`, e.g. the config) and lr_find.png in `folder`."""
    folder = Path(folder)
    write_json(folder / "lr_find.json", {**result.to_dict(), **(extra or {})})
    plot_lr_find(result, folder / "lr_find.png", title)


def plot_lr_find(result: LRFindResult, path: Path, title: str = "") -> None:
    # the Figure API with an Agg canvas: no pyplot, no global backend switch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if result.held_out:
        ax.plot(result.lrs, result.training_losses, color="0.85", lw=1, label="training batch loss")
        ax.plot(
            result.lrs, result.losses, color="0.6", lw=1,
            label=f"loss on {result.held_out} held-out images",
        )  # fmt: skip
    else:
        ax.plot(result.lrs, result.losses, color="0.75", lw=1, label="batch loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=2, label="smoothed loss (zero lag)")
    ax.set_xscale("log")
    styles = {"valley": ":", "steepest": "--", "min_div10": "-."}
    for name, value in asdict(result.rules).items():
        if value is not None:
            ax.axvline(value, color="0.4", ls=styles[name], lw=1, label=f"{name} {value:.2g}")
    if result.suggestion is not None:
        ax.axvline(result.agreed, color="C3", lw=2, label=f"agreed {result.agreed:.2g}")
        if result.suggestion != result.agreed:
            label = f"{result.schedule} peak {result.suggestion:.2g}"
            ax.axvline(result.suggestion, color="C3", lw=2, ls="--", label=label)
        head = f"suggested lr {result.suggestion:.3g} ({result.schedule})"
    else:
        head = "no clear valley"
    skip = warmup(len(result.smoothed))
    if len(result.smoothed) > skip:
        # the divergent tail would squash the valley: show the start of the curve to 1.5x
        low, start = min(*result.smoothed, *result.losses[skip:]), result.smoothed[skip]
        ax.set_ylim(low - 0.1 * (start - low) - 1e-3, max(start, low) * 1.5 + 1e-3)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss" if result.held_out else "training loss")
    ax.set_title(f"{title}: {head}" if title else head)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    footer = f"{result.reason}; {result.loss_source}" if result.loss_source else result.reason
    fig.text(0.01, 0.01, footer, fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.09 if result.loss_source else 0.04, 1, 1))  # room for the footer
    write_with(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
