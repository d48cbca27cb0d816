"""EpochMean: the epoch's accuracy and loss as two sums, and old checkpoints' states read in."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.engine.epoch_metrics import EpochMean, correct, from_torchmetrics


def test_accuracy_and_batch_weighted_loss_equal_the_hand_computed_ones():
    acc, loss = EpochMean(), EpochMean()
    batches = [
        (torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5]]), torch.tensor([0, 0, 0]), 0.9),
        (torch.tensor([[0.1, 0.2]]), torch.tensor([1]), 0.3),
    ]
    for logits, y, batch_loss in batches:
        acc.update(correct(logits, y), len(y))
        loss.update(torch.tensor(batch_loss) * len(y), len(y))
    assert acc.compute().item() == 3 / 4  # rows 1 and 3 right, then the single one right
    assert math.isclose(loss.compute().item(), (0.9 * 3 + 0.3 * 1) / 4, rel_tol=1e-6)
    acc.reset()
    acc.update(torch.tensor(1), 2)
    assert acc.compute().item() == 0.5


def test_a_nan_loss_stays_nan_for_the_divergence_check():
    loss = EpochMean()
    loss.update(torch.tensor(1.0) * 4, 4)
    loss.update(torch.tensor(float("nan")) * 4, 4)
    assert math.isnan(loss.compute().item())


@pytest.mark.filterwarnings("ignore:The ``compute`` method")  # restored states, no update yet
def test_torchmetrics_states_of_an_older_checkpoint_become_the_sums():
    import torchmetrics

    logits = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]])
    y = torch.tensor([0, 2, 2, 1])
    old_acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
    old_loss = torchmetrics.MeanMetric()
    old_acc.update(logits, y)
    old_loss.update(torch.tensor(2.0), weight=3)
    old_loss.update(torch.tensor(4.0), weight=1)
    state = {f"train_acc.{k}": v for k, v in old_acc.metric_state.items()}
    state |= {f"train_loss.{k}": v for k, v in old_loss.metric_state.items()}
    state["model.w"] = torch.ones(1)
    for prefix in ("train_acc", "train_loss"):
        from_torchmetrics(state, prefix)
    assert sorted(state) == [
        "model.w", "train_acc.count", "train_acc.total", "train_loss.count", "train_loss.total"
    ]  # fmt: skip
    acc, loss = EpochMean(), EpochMean()
    acc.load_state_dict({"total": state["train_acc.total"], "count": state["train_acc.count"]})
    loss.load_state_dict({"total": state["train_loss.total"], "count": state["train_loss.count"]})
    assert acc.compute().item() == 0.5  # rows 1 and 3 of 4
    assert loss.compute().item() == (2.0 * 3 + 4.0) / 4


def test_the_module_reads_an_older_checkpoint_strictly():
    import torchmetrics

    from cnnlab.config import OptimConfig
    from cnnlab.engine.module import ClassifierModule
    from cnnlab.models import create_model

    def module():
        torch.manual_seed(0)
        model = create_model("smallcnn", num_classes=3)
        return ClassifierModule(model, OptimConfig(), epochs=1, steps_per_epoch=1, seed=0)

    old_acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
    old_acc.update(torch.eye(3), torch.tensor([0, 1, 0]))
    old_loss = torchmetrics.MeanMetric()
    old_loss.update(torch.tensor(1.5), weight=3)
    state = {k: v for k, v in module().state_dict().items() if k.startswith("model.")}
    state |= {f"train_acc.{k}": v for k, v in old_acc.metric_state.items()}
    state |= {f"train_loss.{k}": v for k, v in old_loss.metric_state.items()}
    checkpoint = {"state_dict": state}
    restored = module()
    restored.on_load_checkpoint(checkpoint)
    restored.load_state_dict(checkpoint["state_dict"])  # strict: every key known
    restored.train_acc.update(torch.tensor(1), 1)  # the epoch goes on: 3 of 4 right
    assert restored.train_acc.compute().item() == 3 / 4
    assert restored.train_loss.total.item() == 4.5 and restored.train_loss.count.item() == 3
