"""The LightningModule: the configured optimizer, with fused kernels where possible, and
validation through the folded inference copy, refreshed with each epoch's weights."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from cnnlab.config import Config, OptimConfig
from cnnlab.data.bundle import DataBundle
from cnnlab.engine.module import ClassifierModule, make_optimizer, param_groups
from cnnlab.engine.trainer import fit
from cnnlab.models import create_model, fold
from cnnlab.models.base import CnnClassifier
from cnnlab.models.spec import PreprocessSpec
from cnnlab.plan import make_plan


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_the_optimizer_is_fused_on_a_cpu_and_steps_like_the_per_tensor_loop(name):
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=4)
    o = OptimConfig(optimizer=name, lr=0.05 if name == "sgd" else 1e-3, weight_decay=1e-3)
    twin, initial = copy.deepcopy(model), copy.deepcopy(model.state_dict())
    fused = make_optimizer(param_groups(model, o), o)
    assert all(g["fused"] for g in fused.param_groups)
    # the default loop over the same groups, built by hand
    groups = param_groups(twin, o)
    if name == "sgd":
        loop = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=True, fused=False)
    else:
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        loop = cls(groups, lr=o.lr, fused=False, foreach=False)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 4, (8,))
    for net, opt in ((model, fused), (twin, loop)):
        for step in range(3):
            torch.manual_seed(step)  # the same dropout masks for both
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True):
        # the same math, rounded in another order (an ulp or so after three steps)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, initial[k])]
    assert len(moved) > 10  # the steps did train


def test_under_a_grad_scaler_the_optimizer_is_the_per_tensor_loop():
    # fp16 mixed precision: Lightning unscales before the hooks and clipping only for
    # optimizers that do not unscale inside their (fused) step
    model = create_model("smallcnn", num_classes=4)
    o = OptimConfig()
    opt = make_optimizer(param_groups(model, o), o, grad_scaler=True)
    assert not any(g["fused"] for g in opt.param_groups)
    assert not getattr(opt, "_step_supports_amp_scaling", False)


class _Blobs(torch.utils.data.Dataset):
    """Two classes of 12x12 images told apart by brightness."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.targets = [i % 2 for i in range(n)]
        shift = torch.tensor(self.targets, dtype=torch.float32).view(-1, 1, 1, 1)
        self.x = torch.randn(n, 1, 12, 12, generator=g) + shift

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.x[i], self.targets[i]


def _val_loss(model, data, memory_format) -> float:
    x, y = data.x.contiguous(memory_format=memory_format), torch.tensor(data.targets)
    with torch.inference_mode():
        return F.cross_entropy(model(x), y).item()


def test_validation_runs_on_the_folded_copy_refreshed_with_each_epochs_weights(
    tmp_path, monkeypatch
):
    built, refreshed = [], []
    monkeypatch.setattr(
        fold.LiveInferenceCopy, "refresh",
        lambda self, f=fold.LiveInferenceCopy.refresh: (refreshed.append(1), f(self))[1],
    )  # fmt: skip
    build = fold.LiveInferenceCopy.build.__func__
    monkeypatch.setattr(
        fold.LiveInferenceCopy, "build",
        classmethod(lambda cls, *a, **k: built.append(build(cls, *a, **k)) or built[-1]),
    )  # fmt: skip
    cfg = Config()
    for key, value in {"train.epochs": 3, "data.batch_size": 16, "data.augment": "none"}.items():
        cfg.set(key, value)
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=2, in_chans=1, input_size=12)
    spec = PreprocessSpec(input_size=(1, 12, 12), mean=(0.0,), std=(1.0,))
    val = _Blobs(40, 1)  # 16 + 16 + 8: a short last batch too
    bundle = DataBundle(["a", "b"], _Blobs(64, 0), val, None, spec, {}, {})
    plan = make_plan(cfg, tmp_path)
    result = fit(plan, bundle, model, export_best=lambda *a: None, log=lambda s: None)
    assert len(built) == 1 and len(refreshed) == 2  # built at epoch 1, refreshed for 2 and 3
    memory_format = (
        torch.channels_last if plan.config.model.channels_last else torch.contiguous_format
    )
    model.eval()
    fresh = fold.inference_copy(model, val.x[:1], memory_format=memory_format)
    losses = [row["val_loss"] for row in result.history]
    # the last epoch's loss is the trained model's, through a copy as fresh as a new one
    assert losses[-1] == pytest.approx(_val_loss(fresh, val, memory_format), abs=1e-6)
    assert losses[-1] == pytest.approx(_val_loss(model, val, memory_format), abs=1e-4)
    assert abs(losses[0] - losses[-1]) > 1e-3  # a stale copy would have kept epoch 1's


def test_a_model_without_batchnorm_validates_with_itself():
    backbone = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    module = ClassifierModule(
        CnnClassifier(backbone, 4, 2), OptimConfig(), epochs=1, steps_per_epoch=1, seed=0
    )
    module.eval()
    # nothing to fold: a copy of every weight would buy the conv + ReLU fusion alone
    assert module._validation_model((torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))) is None
    assert module._val_copy is False


def test_a_diverged_model_validates_with_itself_and_says_nothing_of_folding(recwarn):
    model = create_model("smallcnn", num_classes=2, in_chans=1, input_size=12)
    with torch.no_grad():
        model.backbone[0].weight.fill_(float("nan"))
    module = ClassifierModule(model, OptimConfig(), epochs=1, steps_per_epoch=1, seed=0)
    module.eval()
    assert module._validation_model((torch.randn(2, 1, 12, 12), torch.tensor([0, 1]))) is None
    assert module._val_copy is False and not recwarn.list
