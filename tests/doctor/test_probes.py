"""Probes on tiny hand-built models and datasets, checked against values computed here."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import Config
from cnnlab.doctor import probes as P
from cnnlab.doctor.adapter import ProbeInputs
from cnnlab.models.base import CnnClassifier


class ArrayData:
    """(x, y) items over arrays, with `.images` (uint8) like the built-in Fashion-MNIST."""

    def __init__(self, images: np.ndarray, targets: list[int]) -> None:
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]).float().unsqueeze(0) / 255.0, self.targets[i]


def inputs_for(model: CnnClassifier, train, val=None, **optim) -> ProbeInputs:
    cfg = Config()
    for key, value in optim.items():
        setattr(cfg.optim, key, value)
    return ProbeInputs(
        cfg=cfg, classes=[str(i) for i in range(model.num_classes)], train=train, val=val,
        test=None, to_input=nn.Identity(), spec=None, build={}, saved=model,
    )  # fmt: skip


def linear_model(n_in: int = 4, n_out: int = 3) -> CnnClassifier:
    torch.manual_seed(0)
    return CnnClassifier(nn.Sequential(nn.Flatten(), nn.Linear(n_in, 5)), 5, n_out)


def test_input_stats_match_numpy():
    x = torch.randn(8, 3, 5, 5) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + 3.0
    stats = P.input_stats(x)
    flat = x.numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    assert stats["mean"] == pytest.approx(flat.mean(1), abs=1e-4)
    assert stats["std"] == pytest.approx(flat.std(1, ddof=1), abs=1e-4)


def test_dead_relu_counts_channels_that_never_fire_even_with_inplace_relus():
    conv = nn.Conv2d(1, 4, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([1.0, -1.0, 0.5, -0.1]))  # channels 1 and 3 always <= 0
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1), nn.ReLU())
    with P.DeadReluCounter(model) as counter:
        for _ in range(2):  # two batches
            model(torch.randn(3, 1, 4, 4))
    out = counter.result(images=6, batch=3)
    assert out["per_layer"]["1"] == 0.5
    assert out["overall"] == pytest.approx((2 + 2 * out["per_layer"]["3"]) / 6)


def test_dead_relu_separates_the_calls_of_a_module_applied_twice():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.relu = nn.ReLU()

        def forward(self, x):
            a = self.relu(x[:, :2])  # 2 channels, both alive
            b = self.relu(-x[:, 2:].abs() - 1)  # 3 channels, all dead
            return torch.cat([a.mean((2, 3)), b.mean((2, 3))], 1)

    model = Twice()
    with P.DeadReluCounter(model) as counter:
        model(torch.randn(4, 5, 3, 3).abs() + 0.1)
    out = counter.result(images=4, batch=128)
    assert out["per_layer"] == {"relu#0": 0.0, "relu#1": 1.0}
    assert out["overall"] == pytest.approx(3 / 5)


def test_update_ratio_of_plain_sgd_is_lr_times_grad_over_weight():
    model = linear_model()
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    ref = copy.deepcopy(model)
    F.cross_entropy(ref(x), y).backward()
    expected = {
        n: 0.1 * float(p.grad.norm()) / float(p.detach().norm())
        for n, p in ref.named_parameters()
        if p.ndim >= 2
    }
    inputs = inputs_for(model, train=None, lr=0.1, momentum=0.0, weight_decay=0.0)
    out = P.update_ratio(model, inputs, x, y)
    assert out["per_layer"] == pytest.approx(expected, rel=1e-3)
    assert out["median"] == pytest.approx(sorted(expected.values())[len(expected) // 2], rel=1e-3)


def test_overfit_one_batch_fits_with_a_working_lr_and_not_with_zero():
    x, y = torch.randn(16, 32), torch.arange(16) % 3  # 16 points in 32-d: separable
    model = linear_model(n_in=32)
    fit = P.overfit_one_batch(model, inputs_for(model, None, lr=0.5), x, y)
    assert fit["fitted"] and fit["final_acc"] >= 0.9 and fit["final_loss"] < fit["initial_loss"]
    model = linear_model(n_in=32)
    stuck = P.overfit_one_batch(model, inputs_for(model, None, lr=0.0), x, y)
    assert not stuck["fitted"] and stuck["steps"] == 40
    assert stuck["final_loss"] == pytest.approx(stuck["initial_loss"], rel=1e-6)


def test_init_probe_loss_is_ln_c_for_zero_logits_and_the_prior_bias_value():
    model = linear_model(n_out=4)
    with torch.no_grad():
        model.head[1].weight.zero_()
        model.head[1].bias.zero_()
    x, y = torch.randn(8, 4), torch.tensor([0, 0, 0, 0, 0, 1, 2, 3])
    counts = np.array([70, 10, 10, 10])
    out = P.init_probe(model, inputs_for(model, None), x, y, counts)
    assert out["init_loss"] == pytest.approx(math.log(4))
    prior = counts / counts.sum()
    assert out["prior_bias_loss"] == pytest.approx(-np.mean(np.log(prior[y.numpy()])), rel=1e-5)
    assert list(out["act_std"]) == ["backbone.1", "head.1"] and out["act_std"]["head.1"] == 0.0


def test_bn_gap_is_large_when_running_statistics_are_wrong():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
    model = CnnClassifier(backbone, 8, 2)
    x = torch.randn(256, 4)
    y = (x[:, 0] > 0).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    items = [(x[i], int(y[i])) for i in range(256)]
    inputs = inputs_for(model, items, items)
    idx = np.arange(256)
    model.eval()
    logits = model(x).detach()
    healthy = P.bn_gap(model, inputs, idx, logits, y)
    assert abs(healthy["gap"]) < 0.05
    with torch.no_grad():
        backbone[2].running_mean += 5.0  # statistics that do not describe the data
    wrong = model(x).detach()
    broken = P.bn_gap(model, inputs, idx, wrong, y)
    assert broken["eval_acc"] == pytest.approx(float((wrong.argmax(1) == y).float().mean()))
    assert broken["gap"] > 0.2


def test_exact_copies_across_splits_are_counted():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(6, 4, 4), dtype=np.uint8)
    val = rng.integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    val[1], val[3] = train[0], train[5]
    model = linear_model()
    inputs = inputs_for(model, ArrayData(train, [0] * 6), ArrayData(val, [0] * 5))
    assert P.cross_split_duplicates(inputs) == {"val": {"images": 5, "copies_of_train": 2}}


def test_pick_spreads_indices_in_a_seeded_order():
    a, b = P.pick(100, 10, seed=1), P.pick(100, 10, seed=1)
    assert (a == b).all() and sorted(a) == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]
    assert sorted(P.pick(5, 10, seed=0)) == [0, 1, 2, 3, 4]
