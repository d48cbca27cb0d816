"""The LightningModule's optimizer: the configured one, with fused kernels where possible."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from cnnlab.config import OptimConfig
from cnnlab.engine.module import make_optimizer, param_groups
from cnnlab.models import create_model


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
