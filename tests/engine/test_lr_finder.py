"""The lr finder: the suggestion rules on synthetic curves whose answers are worked out by hand,
and sweeps on a tiny real model that must leave every bit of state as they found it."""

from __future__ import annotations

import copy
import json
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils.data import DataLoader, Dataset

from cnnlab.config import OptimConfig
from cnnlab.engine.lr_finder import (
    LRFindSettings,
    LRFindStatus,
    StopReason,
    agreement,
    lr_find,
    schedule_lr,
    smooth,
    smooth_zero_lag,
    suggest,
    sweep_lrs,
    write_lr_find,
)
from cnnlab.engine.module import ClassifierModule
from cnnlab.errors import ConfigError, DataError
from cnnlab.models import create_model

# ---------------------------------------------------------------------------------------------
# pure functions

X = np.round(np.linspace(-7, 1, 81), 10)  # log10(lr) in steps of 0.1 decade
LRS = 10.0**X


def _cos_fall(x, x0, x1, hi, lo):
    """hi at x0 falling to lo at x1 along half a cosine: steepest exactly in the middle."""
    t = np.clip((x - x0) / (x1 - x0), 0, 1)
    return lo + (hi - lo) * 0.5 * (1 + np.cos(np.pi * t))


def clean_valley():
    # plateau 2.3, cosine fall to 0.5 between 1e-4 and 10^-1.6, then a parabola up
    return _cos_fall(X, -4, -1.6, 2.3, 0.5) + np.where(X > -1.6, 4 * (X + 1.6) ** 2, 0)


def two_falls():
    # a steep early fall (1e-6..1e-5), a long plateau, a shallow late fall to the minimum
    return (
        _cos_fall(X, -6, -5, 2.3, 1.5)
        - (1.5 - _cos_fall(X, -2.5, -1.5, 1.5, 1.2))
        + np.where(X > -1.5, 4 * (X + 1.5) ** 2, 0)
    )


# Hand-worked (the rules skip the first 8 of 81 points, i.e. start at x = -6.2):
# clean_valley: minimum at x=-1.6 -> min/10 at -2.6; steepest at the cosine's middle, -2.8;
#   the loss is within 10% of its 1.8 fall (>= 2.12) up to x=-3.6, so the valley runs from
#   -3.5 to -1.6 (19 steps) and its middle is -3.5 + 0.9 = -2.6; spread 10^0.2 = 1.58x;
#   suggestion 10^((-2.6 - 2.8 - 2.6) / 3).
# two_falls: min/10 at -2.5; steepest in the early fall's middle, -5.5 (slope 0.4*pi per decade
#   against 0.15*pi later); valley from -5.7 (last point >= 2.3 - 0.11 is -5.8) to -1.5, middle
#   -5.7 + 2.1 = -3.6; spread 10^3.
CASES = [
    # (curve, stop, agree_factor, status, valley, steepest, min_div10, suggestion) as log10
    (clean_valley(), StopReason.DIVERGED, 3.0, "suggested", -2.6, -2.8, -2.6, -8 / 3),
    # -2.8 is 0.133 decades (1.36x) from the mean -8/3
    (clean_valley(), StopReason.DIVERGED, 1.3, "rules_disagree", -2.6, -2.8, -2.6, None),
    (clean_valley(), StopReason.DIVERGED, 1.6, "suggested", -2.6, -2.8, -2.6, -8 / 3),
    (two_falls(), StopReason.DIVERGED, 3.0, "rules_disagree", -3.6, -5.5, -2.5, None),
]


@pytest.mark.parametrize("curve,stop,factor,status,valley,steep,mind10,sugg", CASES)
def test_suggestion_rules_on_hand_worked_curves(
    curve, stop, factor, status, valley, steep, mind10, sugg
):
    s = suggest(LRS, curve, stop=stop, agree_factor=factor)
    assert s.status.value == status
    assert math.log10(s.rules.valley) == pytest.approx(valley, abs=1e-9)
    assert math.log10(s.rules.steepest) == pytest.approx(steep, abs=1e-9)
    assert math.log10(s.rules.min_div10) == pytest.approx(mind10, abs=1e-9)
    if sugg is None:
        assert s.lr is None and s.reason.startswith("no clear valley")
    else:
        assert math.log10(s.lr) == pytest.approx(sugg, abs=1e-9)


def test_no_suggestion_without_a_fall_a_minimum_or_enough_points():
    flat = 2.3 + 0.01 * np.sin(np.arange(81))
    assert suggest(LRS, flat).status == LRFindStatus.NO_DESCENT
    falling = _cos_fall(X, -4, 1, 2.3, 0.5)  # still falling when the sweep ended at lr 10
    assert suggest(LRS, falling, stop=StopReason.END).status == LRFindStatus.STILL_FALLING
    short = suggest(LRS[:15], clean_valley()[:15], stop=StopReason.NON_FINITE)
    assert short.status == LRFindStatus.TOO_SHORT and short.lr is None
    assert "NaN" in short.reason


@pytest.mark.parametrize(
    "schedule,factor", [("onecycle", 10), ("cosine", 10), ("none", 1), ("plateau", 1), ("step", 1)]
)
def test_annealed_sgd_schedules_peak_a_decade_above_the_agreed_rate(schedule, factor):
    assert schedule_lr(0.003, schedule, "sgd") == pytest.approx(0.003 * factor)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "none", "plateau"])
def test_adam_takes_the_agreed_rate_as_its_peak(schedule, optimizer):
    assert schedule_lr(0.003, schedule, optimizer) == 0.003


def test_smoothing_by_hand():
    # beta 0.5: averages 0.5, 1.25, 2.125 over corrections 0.5, 0.75, 0.875
    assert smooth([1.0, 2.0, 3.0], 0.5) == pytest.approx([1.0, 5 / 3, 17 / 7])
    ramp = np.arange(40.0)
    # a causal EMA trails a ramp by beta / (1 - beta) = 1 step; forward-backward does not
    assert smooth(ramp, 0.5)[20] == pytest.approx(19.0, abs=1e-4)
    assert smooth_zero_lag(ramp, 0.5)[15:25] == pytest.approx(ramp[15:25], abs=1e-3)


@pytest.mark.parametrize(
    ("values", "mean", "spread"),
    [
        ((1.0, 3.0, 1 / 3), 1.0, 3.0),  # 9x apart, each within 3x of the mean
        ((1.0, 4.0, 1.0), 4 ** (1 / 3), 4 ** (2 / 3)),  # 4x apart: 2.52x from the mean
        ((1.0, 1.0, 10.0), 10 ** (1 / 3), 10 ** (2 / 3)),  # one outlier: 4.64x
        ((0.02, 0.02, 0.02), 0.02, 1.0),
    ],
)
def test_agreement_is_the_largest_factor_from_the_geometric_mean(values, mean, spread):
    assert agreement(values) == pytest.approx((mean, spread), rel=1e-12)


def test_sweep_lrs_are_geometric_and_inclusive():
    assert sweep_lrs(1e-7, 10, 9) == pytest.approx(10.0 ** np.arange(-7, 2), rel=1e-12)


@pytest.mark.parametrize(
    "settings",
    [
        LRFindSettings(start_lr=1.0, end_lr=0.1),
        LRFindSettings(num_steps=5),
        LRFindSettings(beta=1.0),
        LRFindSettings(diverge_factor=1.0),
    ],
)
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        settings.check()


# ---------------------------------------------------------------------------------------------
# sweeps on a tiny real model


class Blobs(Dataset):
    """Two classes of 12x12 images told apart by brightness."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.targets = torch.tensor([i % 2 for i in range(n)])
        self.x = torch.randn(n, 1, 12, 12, generator=g) + self.targets.view(-1, 1, 1, 1)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.x[i], self.targets[i]


class Scale(nn.Module):  # stands in for the data's on-device normalisation
    def forward(self, x):
        return x * 0.5


def _module(optim: OptimConfig, **kw) -> ClassifierModule:
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=2, in_chans=1, input_size=12, dropout=0.3)
    return ClassifierModule(
        model, optim, epochs=2, steps_per_epoch=4, seed=0, channels_last=True,
        batch_transform=Scale(), **kw,
    )  # fmt: skip


def _loader(n: int = 64) -> DataLoader:
    return DataLoader(Blobs(n, 0), batch_size=16, shuffle=True)  # shuffle draws from torch RNG


def _train(module: ClassifierModule, opt: torch.optim.Optimizer, batches) -> None:
    module.train()
    for x, y in batches:
        opt.zero_grad()
        module._loss(module(module.input_transform(x)), y).backward()
        opt.step()


def _rng():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _assert_same_rng(a, b):
    assert torch.equal(a[0], b[0])
    assert a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1]) and a[1][2:] == b[1][2:]
    assert a[2] == b[2]


def test_sweep_restores_model_optimizer_grads_modes_and_rng_bit_exactly():
    module = _module(OptimConfig(optimizer="adam", lr=1e-3, grad_clip=1.0))
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    batches = list(_loader())
    _train(module, opt, batches[:3])  # Adam moments, BatchNorm statistics and grads exist
    torch.manual_seed(11)
    np.random.seed(12)
    random.seed(13)
    twin, twin_opt = copy.deepcopy((module, opt))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    opt_before = copy.deepcopy(opt.state_dict())
    grads = [None if p.grad is None else p.grad.clone() for p in module.parameters()]
    modes = [m.training for m in module.modules()]
    rng = _rng()

    seen = []  # proof that the sweep did change the weights and the BatchNorm buffers
    bn = module.model.backbone[1]
    hook = module.model.head.register_forward_hook(
        lambda m, i, o: seen.append((bn.weight.clone(), int(bn.num_batches_tracked)))
    )
    result = lr_find(module, _loader(), optimizer=opt, settings=LRFindSettings(num_steps=40))
    hook.remove()
    assert len(result.lrs) >= 20 and result.optimizer == "Adam"
    assert not torch.equal(seen[-1][0], before["model.backbone.1.weight"])
    assert seen[-1][1] > int(before["model.backbone.1.num_batches_tracked"])

    after = module.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), k
    state_after = opt.state_dict()
    assert state_after["param_groups"] == opt_before["param_groups"]
    for i, st in opt_before["state"].items():
        for key, v in st.items():
            assert torch.equal(state_after["state"][i][key], v), (i, key)
    for p, g in zip(module.parameters(), grads, strict=True):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert [m.training for m in module.modules()] == modes
    _assert_same_rng(_rng(), rng)

    # what users actually lose elsewhere: training after the finder is training without it
    _train(module, opt, _loader())
    torch.set_rng_state(rng[0])
    np.random.set_state(rng[1])
    random.setstate(rng[2])
    _train(twin, twin_opt, _loader())
    for (k, a), b in zip(module.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_sweep_uses_the_runs_optimizer_groups_and_frozen_backbone():
    optim = OptimConfig(optimizer="sgd", lr=0.1, backbone_lr=0.01, momentum=0.9)
    module = _module(optim)
    module.set_backbone_frozen(True)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    lrs, backbone_calls = [], []

    def record(opt, args, kwargs):
        lrs.append({g["name"]: g["lr"] for g in opt.param_groups})

    hook = register_optimizer_step_pre_hook(record)
    h2 = module.model.backbone.register_forward_hook(
        lambda m, i, o: backbone_calls.append(m.training)
    )
    try:
        result = lr_find(module, _loader(), settings=LRFindSettings(num_steps=30))
    finally:
        hook.remove()
        h2.remove()
    assert result.optimizer == "SGD"
    assert [g["head"] for g in lrs] == pytest.approx(result.lrs, rel=1e-12)
    assert all(g["backbone"] == pytest.approx(g["head"] / 10, rel=1e-12) for g in lrs)
    assert backbone_calls and not any(backbone_calls)  # frozen: BatchNorm in eval mode
    after = module.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_two_sweeps_give_the_same_curve_and_learnable_data_a_suggestion(tmp_path):
    module = _module(OptimConfig(optimizer="sgd", lr=0.1, schedule="none"))
    a = lr_find(module, _loader(128))
    b = lr_find(module, _loader(128))
    assert a.losses == b.losses and a.suggestion == b.suggestion
    assert a.lrs[0] == pytest.approx(1e-7) and len(a.lrs) == len(a.losses) == len(a.smoothed)
    assert min(a.losses) < 0.5 * a.losses[0]  # the brightness blobs are learnable
    write_lr_find(a, tmp_path, title="blobs")
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["lrs"] == a.lrs and saved["status"] == a.status.value
    assert saved["suggestion"] == a.suggestion == a.agreed and saved["schedule"] == "none"
    assert saved["rules"]["min_div10"] > 0
    with Image.open(tmp_path / "lr_find.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200


def test_empty_loader_is_a_data_error():
    module = _module(OptimConfig())
    with pytest.raises(DataError):
        lr_find(module, [])


def _held_out(n: int = 32):
    blobs = Blobs(n, seed=99)  # other images than the training loader's (seed 0)
    return blobs.x, blobs.targets


@pytest.mark.parametrize("frozen", [False, True])
def test_held_out_losses_are_the_loss_on_the_held_out_batch_after_each_step(frozen):
    module = _module(OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, schedule="none"))
    module.model.head[0].p = 0.0  # without dropout the loss is a plain function of the weights
    module.set_backbone_frozen(frozen)
    x, y = _held_out()
    after_step = []

    def measure(opt, args, kwargs):  # recomputed here through the whole model, no cached features
        with torch.no_grad():
            after_step.append(float(module._loss(module(module.input_transform(x)), y)))

    hook = register_optimizer_step_post_hook(measure)
    try:
        result = lr_find(
            module, _loader(64), settings=LRFindSettings(num_steps=30), held_out=(x, y)
        )
    finally:
        hook.remove()
    assert result.held_out == 32
    assert len(result.losses) == len(result.training_losses) == len(result.lrs) >= 20
    assert result.losses == pytest.approx(after_step[: len(result.losses)], rel=1e-5)
    assert result.losses != pytest.approx(result.training_losses, rel=1e-3)


def test_held_out_losses_share_one_dropout_mask_and_leave_no_trace():
    module = _module(OptimConfig(optimizer="sgd", lr=0.1, schedule="none"))
    assert module.model.head[0].p > 0
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rng = _rng()
    # rates far below float32's resolution of these weights: the weights never change, so only a
    # fresh dropout mask per call could make two held-out losses differ
    tiny = LRFindSettings(start_lr=1e-14, end_lr=1e-13, num_steps=20)
    result = lr_find(module, _loader(64), settings=tiny, held_out=_held_out())
    assert len(set(result.losses)) == 1
    assert len(set(result.training_losses)) > 1  # other batches, other masks
    after = module.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    _assert_same_rng(_rng(), rng)
